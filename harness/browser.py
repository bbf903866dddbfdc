"""A real headless Chromium driven through Selenium, for the console's browser tests.

Invariants:
- Nothing is downloaded: Debian's `/usr/bin/chromium` and `/usr/bin/chromedriver` are given
  explicitly and `SE_OFFLINE=true` keeps Selenium Manager off the network.
- The browser stays on loopback: every host name but 127.0.0.1/localhost resolves to nothing
  (`--host-resolver-rules`), and a dead proxy takes anything else; background networking,
  component updates and sync are off.
- Each browser has its own profile directory; `stop()` quits it and then ends chromedriver
  and every process below it by PID (harness.proctree), never by name.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from pathlib import Path

CHROMIUM = "/usr/bin/chromium"
CHROMEDRIVER = "/usr/bin/chromedriver"


class BrowserUnavailable(RuntimeError):
    """chromium, chromium-driver or selenium is missing on this machine."""


def browser_available() -> str | None:
    """None when a browser test can run here, else the reason it cannot."""
    if not (os.access(CHROMIUM, os.X_OK) and os.access(CHROMEDRIVER, os.X_OK)):
        return "chromium and chromium-driver are not installed (run `make system-deps` as root)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "the selenium package is not installed (pip install -e '.[dev]')"
    return None


class Browser:
    def __init__(self, *, width: int = 1200, height: int = 900) -> None:
        reason = browser_available()
        if reason is not None:
            raise BrowserUnavailable(reason)
        os.environ["SE_OFFLINE"] = "true"
        from selenium import webdriver
        from selenium.webdriver.chrome.service import Service

        self.profile = Path(tempfile.mkdtemp(prefix="even-chromium-"))
        options = webdriver.ChromeOptions()
        options.binary_location = CHROMIUM
        for argument in (
            "--headless=new",
            "--no-sandbox",  # root in CI; the profile and the loopback-only rules still apply
            "--disable-dev-shm-usage",
            "--disable-gpu",
            f"--user-data-dir={self.profile}",
            f"--window-size={width},{height}",
            "--host-resolver-rules=MAP * ~NOTFOUND, EXCLUDE 127.0.0.1, EXCLUDE localhost",
            "--proxy-server=http://127.0.0.1:9",  # discard port: nothing leaves through it
            "--proxy-bypass-list=127.0.0.1;localhost",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
            "--no-first-run",
            "--no-default-browser-check",
            "--lang=en-US",
        ):
            options.add_argument(argument)
        self.service = Service(executable_path=CHROMEDRIVER, log_output=os.devnull)
        try:
            self.driver = webdriver.Chrome(service=self.service, options=options)
        except BaseException:
            self._end_service()
            shutil.rmtree(self.profile, ignore_errors=True)
            raise
        self.driver.set_page_load_timeout(30)

    def _end_service(self) -> None:
        from harness.proctree import end_process_tree

        process = getattr(self.service, "process", None)
        if process is not None:
            end_process_tree(process)

    def stop(self) -> None:
        """Quit the browser, then end chromedriver and whatever is left below it, by PID."""
        from harness.proctree import _descendants, _end_processes, end_process_tree

        process = getattr(self.service, "process", None)
        # Collect the tree while chromedriver is still the browser's parent: quitting may
        # leave some of Chromium's helpers behind, reparented and out of reach otherwise.
        below = _descendants(process.pid) if process is not None else []
        with contextlib.suppress(Exception):
            self.driver.quit()
        if process is not None:
            end_process_tree(process)
        _end_processes(below, 5.0)
        shutil.rmtree(self.profile, ignore_errors=True)
