"""keytrail as a library is silent until its host configures logging, and redacts whichever way the host does.

Each case runs in a fresh interpreter: logging and structlog are process-wide, and "nothing on stderr"
is only proven where nothing else has configured them.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

from tests.helpers import EMAIL, PASSWORD

KT_KEY = "kt_" + "A" * 43
# The flow a host application drives: an account, a wrong password, a key generated and saved.
FLOW = f"""
from keytrail import Engine, KeytrailError
engine = Engine.open(URL)
with engine:
    engine.portal.create_account({EMAIL!r}, {PASSWORD!r}, company="Acme")
    for store in ("acme", "globex", "initech"):
        engine.access(store)
        try:
            engine.sign_in(store, email={EMAIL!r}, password="wrong horse battery")
        except KeytrailError:
            pass
        engine.sign_in(store, email={EMAIL!r}, password={PASSWORD!r})
        engine.generate_key(store, description="Amazon Sales Channel")
        engine.save_config(store, key=engine.copy_key(store).key)
        engine.access(store)
"""


def _python(tmp_path: Path, prelude: str, epilogue: str = "") -> subprocess.CompletedProcess[str]:
    """Run the prelude (the host's set-up), the flow, then the epilogue, in a fresh interpreter."""
    url = f"sqlite:///{tmp_path}/host.db"
    code = textwrap.dedent(prelude) + f"\nURL = {url!r}\n" + FLOW + textwrap.dedent(epilogue)
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=False, timeout=300, cwd=tmp_path
    )


def test_engine_use_prints_nothing(tmp_path: Path) -> None:
    """Opening an engine and running commands, a failed sign-in included, writes nothing on stdout or stderr."""
    done = _python(tmp_path, "")
    assert (done.returncode, done.stdout, done.stderr) == (0, "", "")


def test_the_hosts_structlog_configuration_is_left_alone(tmp_path: Path) -> None:
    """keytrail never calls ``structlog.configure``: unconfigured stays unconfigured, a host's set-up stays its own."""
    untouched = _python(
        tmp_path,
        "import structlog",
        "\nassert not structlog.is_configured(), 'keytrail configured structlog'\n",
    )
    assert (untouched.returncode, untouched.stderr) == (0, "")
    (tmp_path / "host.db").unlink()
    hosts = _python(
        tmp_path,
        """
        import structlog
        def mine(_logger, _method, event_dict):
            return event_dict
        structlog.configure(processors=[mine, structlog.processors.JSONRenderer()], cache_logger_on_first_use=False)
        BEFORE = structlog.get_config()
        """,
        "\nassert structlog.get_config() == BEFORE, 'keytrail changed the host structlog configuration'\n",
    )
    assert hosts.returncode == 0, hosts.stderr


def test_a_host_using_logging_sees_keytrails_lines_redacted(tmp_path: Path) -> None:
    """With ``logging.basicConfig``, keytrail's transitions show up as JSON messages; secrets never do."""
    done = _python(
        tmp_path,
        """
        import logging, sys
        logging.basicConfig(level=logging.DEBUG, stream=sys.stdout, format="%(name)s %(levelname)s %(message)s")
        """,
        f"""
from keytrail.logs import get_logger
get_logger("keytrail.host").warning("leak_attempt", password="hunter2-secret", note="saw {KT_KEY}")
""",
    )
    assert done.returncode == 0, done.stderr
    lines = [line for line in done.stdout.splitlines() if line.startswith("keytrail.")]
    assert any(" INFO " in line and '"transition"' in line for line in lines), done.stdout[:2000]
    leak = next(line for line in lines if "leak_attempt" in line)
    assert json.loads(leak.split(" ", 2)[2]) == {
        "event": "leak_attempt",
        "password": "[redacted]",
        "note": "saw [redacted]",
    }
    for secret in (PASSWORD, "wrong horse battery", "hunter2-secret", KT_KEY):
        assert secret not in done.stdout + done.stderr


def test_a_host_using_structlog_sees_keytrails_lines_redacted(tmp_path: Path) -> None:
    """A structlog host's own pipeline renders keytrail's events, after keytrail's redaction ran."""
    done = _python(
        tmp_path,
        """
        import structlog
        structlog.configure(processors=[structlog.processors.JSONRenderer()])
        """,
        f"""
from keytrail.logs import get_logger
try:
    raise RuntimeError("gateway refused {KT_KEY}")
except RuntimeError:
    get_logger("keytrail.host").exception("leak_attempt", password="hunter2-secret")
""",
    )
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert any(e["event"] == "transition" for e in events)
    leak = next(e for e in events if e["event"] == "leak_attempt")
    assert leak["password"] == "[redacted]" and "RuntimeError" in leak["exception"]
    for secret in (PASSWORD, "wrong horse battery", "hunter2-secret", KT_KEY):
        assert secret not in done.stdout + done.stderr
