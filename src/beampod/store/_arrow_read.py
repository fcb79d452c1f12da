"""A stored table's columns read as Arrow, for a writer that resumes a run.

tiled's ``read`` of a table gives a pandas DataFrame (its Arrow answer goes through
``read_pandas``), and a writer never imports pandas (ADR 13: ~52 MB per writer process,
which pyarrow would otherwise load only to ask whether a table built from rows is a
pandas object). So the one read on the write path, the stored ``seq_num`` and ``time``
of a run a writer resumes, asks for the same Arrow answer and keeps it Arrow.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import parse_qs, urlparse


def read_columns(table: Any, columns: list[str]) -> dict[str, list[Any]]:
    """``columns`` of every partition of the tiled table client ``table``, in order,
    as Python lists. Requested, and retried, as tiled's own partition read does."""
    import pyarrow
    from tiled.client.utils import handle_error, retry_context
    from tiled.utils import APACHE_ARROW_FILE_MIME_TYPE

    link = table.item["links"]["partition"]
    base = parse_qs(urlparse(link).query)
    values: dict[str, list[Any]] = {name: [] for name in columns}
    for partition in range(table.structure().npartitions):
        for attempt in retry_context(table.context):
            with attempt:
                answer = handle_error(
                    table.context.http_client.get(
                        link,
                        headers={"Accept": APACHE_ARROW_FILE_MIME_TYPE},
                        params={**base, "partition": partition, "column": columns},
                    )
                ).read()
        part = pyarrow.ipc.open_file(pyarrow.py_buffer(answer)).read_all()
        for name in columns:
            values[name].extend(part.column(name).to_pylist())
    return values
