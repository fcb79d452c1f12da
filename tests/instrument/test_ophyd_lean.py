"""ophyd's area detector support loads on first use in a process that loads an
instrument (instrument/_ophyd_lean.py). Each case runs in a fresh interpreter: ophyd
can be imported only once per process."""

from __future__ import annotations

import hashlib
import importlib.util

from beampod.instrument._ophyd_lean import DEFERRED_LINES, PINNED_INIT_SHA256
from tests._fresh import fresh_json


def test_the_pin_is_the_installed_ophyd() -> None:
    # Fails when ophyd's __init__ changes: read it, check DEFERRED_LINES, move the pin.
    spec = importlib.util.find_spec("ophyd")
    assert spec is not None and spec.origin is not None
    with open(spec.origin, "rb") as fh:
        source = fh.read()
    assert hashlib.sha256(source).hexdigest() == PINNED_INIT_SHA256
    assert all(source.decode().count(line) == 1 for line in DEFERRED_LINES)


def test_loading_the_demo_instrument_leaves_area_detectors_unloaded() -> None:
    out = fresh_json(
        """
        import json, sys
        from beampod.instrument import load_instrument
        inst = load_instrument("beampod.demo")
        print(json.dumps({
            "devices": sorted(inst.devices),
            "areadetector": "ophyd.areadetector" in sys.modules,
        }))
        """
    )
    assert {"motor_ph", "pinhole"} <= set(out["devices"])
    assert out["areadetector"] is False


def test_every_name_of_ophyd_is_there_on_first_use() -> None:
    # What a real ophyd exports, from a second fresh interpreter.
    real = fresh_json(
        """
        import json, ophyd
        star = {}
        exec("from ophyd import *", star)
        print(json.dumps({"star": sorted(star), "dir": sorted(dir(ophyd))}))
        """
    )
    lean = fresh_json(
        """
        import json, sys
        from beampod.instrument._ophyd_lean import lean_ophyd
        assert lean_ophyd()
        import ophyd
        before = "ophyd.areadetector" in sys.modules
        from ophyd import EpicsMCA, QuadEM, SimDetectorCam
        import ophyd.areadetector as ad
        same = (ophyd.SimDetectorCam is ad.SimDetectorCam is SimDetectorCam
                and EpicsMCA.__module__ == "ophyd.mca" and QuadEM.__module__ == "ophyd.quadem")
        star = {}
        exec("from ophyd import *", star)
        try:
            ophyd.not_a_name
            missing = "no error"
        except AttributeError as exc:
            missing = str(exc)
        print(json.dumps({"before": before, "same": same, "star": sorted(star),
                          "dir": sorted(dir(ophyd)), "missing": missing}))
        """
    )
    assert lean["before"] is False
    assert lean["same"] is True
    assert lean["star"] == real["star"]
    assert set(lean["dir"]) - {"__getattr__", "__dir__"} == set(real["dir"])
    assert lean["missing"] == "module 'ophyd' has no attribute 'not_a_name'"


def test_an_ophyd_imported_before_is_left_as_it_is() -> None:
    out = fresh_json(
        """
        import json, sys, ophyd
        from beampod.instrument._ophyd_lean import lean_ophyd
        lean = lean_ophyd()
        print(json.dumps({"lean": lean, "areadetector": "ophyd.areadetector" in sys.modules}))
        """
    )
    assert out == {"lean": False, "areadetector": True}
