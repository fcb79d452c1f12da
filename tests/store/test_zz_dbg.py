import pytest
from beampod.store import open_catalog
pytestmark = pytest.mark.pod
def test_zz(tiled_server):
    db = open_catalog(tiled_server.pod, "empty")
    print("CONTENTS", list(db), [db.client[k].item for k in db])
