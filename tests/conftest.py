"""Shared fixtures: golden cases rebuilt from the weight rule."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

# Before torch loads OpenMP: threads that sleep instead of spinning while
# they wait. With another process on the cores, spinning threads made small
# models ~20x slower (measured in benchmarks/animate.py's notes).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import pytest
import torch

from tpsmm import TPSMM, load_config
from tpsmm.testing.golden import fill_with_rule

DATA = Path(__file__).parent / "data"


@pytest.fixture(autouse=True, scope="session")
def _threads():
    # pytest-xdist runs one worker per core (pyproject's addopts): one thread
    # each. In one process (-n 0), two threads for 2 cores in CI.
    # Oversubscribed cores (a training run beside the tests) make OpenMP
    # threads spin against each other: set TPSMM_TEST_THREADS=1.
    default = "1" if "PYTEST_XDIST_WORKER" in os.environ else "2"
    torch.set_num_threads(int(os.environ.get("TPSMM_TEST_THREADS", default)))


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Longest first: slow tests ahead of the rest, by their ``slow(minutes=M)``.

    pytest-xdist deals the tests to the workers in contiguous blocks, so the
    first test starts at once; the ~7-minute training test then runs beside
    all the others instead of after the block dealt before it.
    """
    def minutes(item: pytest.Item) -> float:
        marker = item.get_closest_marker("slow")
        return -1.0 if marker is None else marker.kwargs.get("minutes", 0.0)

    items.sort(key=minutes, reverse=True)  # stable: file order within equal keys


def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    """With TPSMM_NO_SKIPS=1 (CI sets it), a skipped test fails the run: the tests that
    skip when an extra, scikit-image or Chromium is missing must run there."""
    if os.environ.get("TPSMM_NO_SKIPS") != "1" or hasattr(session.config, "workerinput"):
        return  # only the controller of an xdist run sees every worker's reports
    reporter = session.config.pluginmanager.get_plugin("terminalreporter")
    skipped = reporter.stats.get("skipped", []) if reporter else []
    if skipped:
        for report in skipped:
            reporter.write_line(f"skipped, not allowed in CI: {report.nodeid} "
                                f"({report.longrepr[-1] if report.longrepr else ''})", red=True)
        session.exitstatus = pytest.ExitCode.TESTS_FAILED


@pytest.fixture(autouse=True)
def _sigchld_handler_of_the_test_alone():
    """Restore SIGCHLD's handler after each test. A DataLoader with workers installs torch's
    (once per process, for good); in a test process that later runs OpenVINO and a
    subprocess, the child's exit then crashed the process (a segmentation fault, found by
    running the tests of one xdist worker in its order)."""
    handler = signal.getsignal(signal.SIGCHLD)
    yield
    signal.signal(signal.SIGCHLD, handler)


@pytest.fixture
def one_thread():
    """One thread for tests of tiny models: they gain nothing from two, and
    on a busy machine two threads spin against each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


class GoldenCase:
    """One golden case: its arrays, its config and a model with rule weights."""

    def __init__(self, name: str):
        self.name = name
        self.meta = json.loads((DATA / f"{name}.json").read_text())
        self.arrays = dict(np.load(DATA / f"{name}.npz"))
        self.config = load_config(
            {
                "image_size": self.meta["image_size"],
                "model_params": self.meta["model_params"],
                "train_params": self.meta["train_params"],
            }
        )

    def tensor(self, key: str) -> torch.Tensor:
        return torch.from_numpy(self.arrays[key])

    def model(self) -> TPSMM:
        model = TPSMM(self.config)
        for name, network in model.networks.items():
            fill_with_rule(network, name)
        return model.eval()


@pytest.fixture(scope="session")
def tiny_case() -> GoldenCase:
    return GoldenCase("tiny-64")


@pytest.fixture(scope="session")
def vox_case() -> GoldenCase:
    return GoldenCase("vox-256")
