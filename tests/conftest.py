"""Shared pytest set-up: quiet TensorFlow, and keep the tests out of the user's caches."""

import atexit
import os
import shutil
import sys
import tempfile

# Test helpers (tiny_release, training_slice, download_servers) import by their bare names
# from every test folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
# The embedded default experiment must never be built into the user's real cache by a
# test run: point HELDOUT_HOME at a fresh folder for the whole session.
os.environ["HELDOUT_HOME"] = tempfile.mkdtemp(prefix="heldout-test-home-")
atexit.register(shutil.rmtree, os.environ["HELDOUT_HOME"], ignore_errors=True)
