"""import-linter contract types of this project (registered in pyproject's ``contract_types``).

import-linter has no built-in rule for private modules, hence this one.
"""

from __future__ import annotations

from grimp import ImportGraph
from importlinter.application import output
from importlinter.domain.contract import Contract, ContractCheck


def private_owner(module: str) -> str | None:
    """The package that owns ``module`` if it is private: the parent of its first ``_x`` part.

    ``beampod.store._sink`` -> ``beampod.store``; ``beampod.store`` -> None (public).
    """
    parts = module.split(".")
    for i, part in enumerate(parts):
        if part.startswith("_") and not part.startswith("__"):
            return ".".join(parts[:i])
    return None


def _within(module: str, package: str) -> bool:
    return module == package or module.startswith(package + ".")


class PrivateModulesContract(Contract):
    """A private module (``pkg._x``, or anything below it) is imported only from inside ``pkg``.

    Everything else goes through ``pkg``'s public ``__init__``, which re-exports what other
    packages may use. Checks every direct import (lazy ones inside functions too) between
    modules of the root packages.
    """

    type_name = "private_modules"

    def check(self, graph: ImportGraph, verbose: bool) -> ContractCheck:
        violations: list[dict[str, object]] = []
        for importer in sorted(graph.modules):
            for imported in sorted(graph.find_modules_directly_imported_by(importer)):
                owner = private_owner(imported)
                if owner is None or _within(importer, owner):
                    continue
                details = graph.get_import_details(importer=importer, imported=imported)
                violations.append(
                    {
                        "importer": importer,
                        "imported": imported,
                        "owner": owner,
                        "lines": sorted(d["line_number"] for d in details),
                    }
                )
        return ContractCheck(kept=not violations, metadata={"violations": violations})

    def render_broken_contract(self, check: ContractCheck) -> None:
        for v in check.metadata["violations"]:
            lines = ", ".join(f"l.{n}" for n in v["lines"])
            output.print_error(
                f"{v['importer']} imports private {v['imported']} ({lines}): "
                f"export it from {v['owner']} and import it from there",
                bold=False,
            )
        output.new_line()
