"""A throwaway PostgreSQL cluster (tests, local runs): Debian's server binaries, a temp dir, a
free port on 127.0.0.1, trust authentication, ``fsync=off``. Nothing is downloaded.

initdb and postgres refuse to run as root, and CI runs as root: then they run as the
``postgres`` system user (``runuser``) in a temp dir owned by that user. Clients (``createdb``)
run as whoever we are; they connect over TCP as the ``postgres`` role.

``pg_ctl`` daemonises the server (its parent is init, not us), so nothing stops it when we die:
``start`` registers ``stop`` with :mod:`atexit` (and ``stop`` takes it back), so a run that is
interrupted, or never reaches its ``stop``, still leaves no server and no temp dir behind when
the interpreter exits. A ``kill -9`` of the interpreter is beyond that."""

from __future__ import annotations

import atexit
import os
import pwd
import shutil
import subprocess
import tempfile
from pathlib import Path
from types import TracebackType

from onboarding.tooling.ports import free_port

INSTALL_HINT = "install them with `apt-get install postgresql`"
SERVER_USER = "postgres"
START_ATTEMPTS = 3  # a free port can be taken between our probe and postgres' bind


class PostgresNotInstalled(RuntimeError):
    pass


class PostgresClusterError(RuntimeError):
    pass


def server_bindir() -> Path:
    """The directory holding ``initdb`` and ``pg_ctl``: ``pg_config --bindir``, else the newest
    ``/usr/lib/postgresql/*/bin``."""
    candidates: list[Path] = []
    pg_config = shutil.which("pg_config")
    if pg_config:
        out = subprocess.run([pg_config, "--bindir"], capture_output=True, text=True, check=False)
        if out.returncode == 0 and out.stdout.strip():
            candidates.append(Path(out.stdout.strip()))
    versions = Path("/usr/lib/postgresql").glob("*/bin")
    candidates += sorted(versions, key=lambda p: _version(p.parent.name), reverse=True)
    for bindir in candidates:
        if all((bindir / tool).is_file() for tool in ("initdb", "pg_ctl", "createdb")):
            return bindir
    raise PostgresNotInstalled(
        "PostgreSQL server binaries (initdb, pg_ctl, createdb) were not found in "
        f"`pg_config --bindir` or /usr/lib/postgresql/*/bin; {INSTALL_HINT}"
    )


def _version(name: str) -> tuple[int, ...]:
    return tuple(int(part) for part in name.split(".") if part.isdigit())


class PostgresCluster:
    """``with PostgresCluster() as pg: pg.url`` — or ``start()``/``stop()`` (both blocking; run
    them with ``asyncio.to_thread`` from async code)."""

    def __init__(self, dbname: str = "onboarding", base_dir: Path | None = None) -> None:
        self.dbname = dbname
        self.base_dir = base_dir
        self.port = 0
        self._dir: Path | None = None
        self._bindir: Path | None = None

    @property
    def url(self) -> str:
        return self.url_for(self.dbname)

    def url_for(self, dbname: str) -> str:
        if not self.port:
            raise PostgresClusterError("the cluster is not started")
        return f"postgresql://{SERVER_USER}@127.0.0.1:{self.port}/{dbname}"

    def start(self) -> None:
        if self._dir is not None:
            return
        self._bindir = server_bindir()
        as_root = os.geteuid() == 0
        owner = _server_user() if as_root else None
        self._dir = Path(tempfile.mkdtemp(prefix="pgcluster-", dir=self.base_dir))
        atexit.register(self.stop)  # taken back by stop()
        try:
            if owner is not None:
                os.chown(self._dir, owner.pw_uid, owner.pw_gid)
            self._server(
                "initdb", "-D", str(self._data), "-A", "trust", "-U", SERVER_USER,
                "--no-sync", "-E", "UTF8", "--locale=C", "--no-instructions",
            )  # fmt: skip
            self._start_on_a_free_port()
            self.create_database(self.dbname)
        except BaseException:
            self.stop()
            raise

    def stop(self) -> None:
        """Stop at once (``-m immediate``: nothing here is worth a clean shutdown) and remove
        the directory. Safe to call twice."""
        directory, self._dir = self._dir, None
        if directory is None:
            return
        atexit.unregister(self.stop)
        try:
            if (directory / "data" / "postmaster.pid").exists():
                self._server("pg_ctl", "-D", str(directory / "data"), "-m", "immediate", "-w",
                             "stop", check=False)  # fmt: skip
        finally:
            self.port = 0
            shutil.rmtree(directory, ignore_errors=True)

    def create_database(self, name: str) -> str:
        """Create database ``name`` and return its URL."""
        self._run([str(self._tool("createdb")), "-h", "127.0.0.1", "-p", str(self.port),
                   "-U", SERVER_USER, name])  # fmt: skip
        return self.url_for(name)

    def __enter__(self) -> PostgresCluster:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # --- internals -----------------------------------------------------------------------

    @property
    def _data(self) -> Path:
        assert self._dir is not None
        return self._dir / "data"

    def _start_on_a_free_port(self) -> None:
        assert self._dir is not None
        log = self._dir / "postgres.log"
        for attempt in range(1, START_ATTEMPTS + 1):
            port = free_port()
            options = f"-p {port} -c listen_addresses=127.0.0.1 -k {self._dir} -c fsync=off"
            try:
                # -l: postgres writes to the log, not to our pipes (else we would wait for it).
                self._server("pg_ctl", "-D", str(self._data), "-l", str(log), "-w", "-t", "30",
                             "-o", options, "start")  # fmt: skip
            except PostgresClusterError:
                if attempt == START_ATTEMPTS:
                    raise
                continue
            self.port = port
            return

    def _tool(self, name: str) -> Path:
        assert self._bindir is not None
        return self._bindir / name

    def _server(self, tool: str, *args: str, check: bool = True) -> None:
        """Run a server-side tool, as the ``postgres`` user when we are root."""
        command = [str(self._tool(tool)), *args]
        if os.geteuid() == 0:
            command = ["runuser", "-u", SERVER_USER, "--", *command]
        self._run(command, check=check)

    def _run(self, command: list[str], check: bool = True) -> None:
        # cwd: the tools warn when they cannot chdir back to a root-only directory.
        cwd = self._dir or Path(tempfile.gettempdir())
        result = subprocess.run(command, cwd=cwd, capture_output=True, text=True, check=False)
        if check and result.returncode != 0:
            tool = Path(command[command.index("--") + 1 if "--" in command else 0]).name
            output = (result.stderr or result.stdout).strip()
            raise PostgresClusterError(
                f"{tool} failed (exit {result.returncode}): {output}{self._log_tail()}"
            )

    def _log_tail(self) -> str:
        log = self._dir / "postgres.log" if self._dir else None
        if log is None or not log.is_file():
            return ""
        return "\npostgres.log:\n" + "\n".join(log.read_text(errors="replace").splitlines()[-10:])


def _server_user() -> pwd.struct_passwd:
    """As root, the server runs as ``postgres``: that user and ``runuser`` must exist."""
    if shutil.which("runuser") is None:
        raise PostgresNotInstalled("running PostgreSQL as root needs `runuser` (util-linux)")
    try:
        return pwd.getpwnam(SERVER_USER)
    except KeyError:
        raise PostgresNotInstalled(
            f"running PostgreSQL as root needs the {SERVER_USER!r} system user; {INSTALL_HINT}"
        ) from None
