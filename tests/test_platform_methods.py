"""Platform-honest methods: the code paths of platforms without clear_refs, posix_fadvise,
PSS or RLIMIT_AS, run for real here by simulating those facts."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from persistbench.commands.main import main
from persistbench.measure import methods
from persistbench.measure import phases as measure
from persistbench.results import methods as recorded_methods


@pytest.fixture
def simulated_macos(monkeypatch):
    monkeypatch.setenv(methods.SIMULATE_VAR, "darwin")
    methods.active.cache_clear()
    monkeypatch.setattr(measure, "PEAK_METHOD", methods.PEAK_SAMPLED)
    yield methods.active()
    methods.active.cache_clear()


def _allocate(megabytes: int) -> int:
    """Resident megabytes built one at a time, as a load builds its objects: between them
    the interpreter lets the sampling thread run (a single C call holding the GIL for the
    whole phase would not, which the sampler's docstring says)."""
    blocks = [b"x" * 2**20 for _ in range(megabytes)]
    return len(blocks)


def test_sampled_peaks_belong_to_the_phase_not_to_the_process_lifetime(simulated_macos):
    big = measure.measure_phase(lambda: _allocate(300))
    small = measure.measure_phase(lambda: _allocate(8))
    assert big.peak_rss_bytes > 200 * 2**20
    # ru_maxrss would repeat the 300 MB lifetime peak here; the sampler sees this phase only.
    assert small.peak_rss_bytes < 100 * 2**20


def test_no_fadvise_no_pss_no_cap_are_said_not_faked(simulated_macos, tmp_path):
    path = tmp_path / "model.bin"
    path.write_bytes(os.urandom(1 << 20))
    fraction, why_not = measure.evict_verified(path)
    assert fraction is None and "posix_fadvise" in why_not
    assert measure.cap_address_space() is None
    memory = measure.process_memory(os.getpid())
    assert memory["pss_bytes"] is None and memory["uss_bytes"] > 0
    recorded = methods.methods(simulated_macos)
    assert recorded["peak_memory"] == methods.PEAK_SAMPLED
    assert recorded["shared_memory"].startswith("uss-only")
    assert recorded["cold_cache"].startswith("unsupported")
    assert recorded["start_method"] == "spawn"
    assert recorded["simulated_platform"] == "darwin"


def test_an_unknown_simulation_is_refused(monkeypatch):
    monkeypatch.setenv(methods.SIMULATE_VAR, "amiga")
    methods.active.cache_clear()
    with pytest.raises(ValueError, match="'amiga' is not a platform"):
        methods.active()
    methods.active.cache_clear()


def test_measure_families():
    assert recorded_methods.families_of("load_peak_rss_bytes") == ("peak_memory", "allocator")
    assert recorded_methods.families_of("load_cold_s") == ("cold_cache", "allocator")
    assert recorded_methods.families_of("total_pss_bytes") == ("shared_memory", "allocator")
    assert recorded_methods.families_of("load_s") == ("allocator",)
    assert recorded_methods.families_of("file_bytes") == ()
    linux = methods.methods(methods.probe())
    mac = methods.methods(methods.SIMULATED["darwin"])
    assert set(recorded_methods.differing("load_peak_rss_bytes", linux, mac)) == {"peak_memory"}
    assert recorded_methods.differing("file_bytes", linux, mac) == {}


def test_windows_gets_one_line_and_the_cli_imports_without_resource(monkeypatch, capsys):
    monkeypatch.setattr(sys, "platform", "win32")
    assert main(["list"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "Windows is not supported" in err
    done = subprocess.run([sys.executable, "-c", "import sys; sys.modules['resource'] = None; "
                           "import persistbench.commands.main"], capture_output=True, text=True,
                          timeout=120)
    assert done.returncode == 0, done.stderr[-1500:]
