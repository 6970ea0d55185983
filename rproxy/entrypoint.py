"""The container entrypoint: say which mode and why, drop root for good, exec the command.

``rproxy-entrypoint CMD [ARGS ...]`` (the image's ENTRYPOINT; CMD is an rproxy command line by
default, and ``docker run image bash`` works too):

- The mode is JupyterHub when the hub's variables are there (JUPYTERHUB_API_TOKEN together with
  JUPYTERHUB_SERVICE_PREFIX or JUPYTERHUB_USER), else standalone; the log line says which and why.
- Started as root, it creates the user's home and ``work`` folder, gives them to NB_UID:NB_GID
  (1000:100 by default, docker-stacks' names: NB_USER, NB_UID, NB_GID, CHOWN_HOME=yes for the
  whole home), then drops privileges for good (setgroups, setgid, setuid; no ``su`` and no shell,
  so no quoting traps) before it execs the command. RPROXY_ALLOW_ROOT=yes keeps root.
- Started as another user, it execs the command as it is.
- Arguments pass through untouched, and exec keeps the PID, so signals reach rproxy, which
  forwards them to the app.
"""

from __future__ import annotations

import logging
import os
import pwd
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path

logger = logging.getLogger("rproxy.entrypoint")

DEFAULT_COMMAND = ("rproxy", "--help")

# The variables this entrypoint and its health check read.
ENVIRONMENT: tuple[tuple[str, str], ...] = (
    ("JUPYTERHUB_API_TOKEN", "set, with JUPYTERHUB_SERVICE_PREFIX or JUPYTERHUB_USER: the log "
     "says JupyterHub mode, else standalone"),
    ("JUPYTERHUB_SERVICE_URL", "the health check's port (8080)"),
    ("JUPYTERHUB_SERVICE_PREFIX", "the health check's prefix (/)"),
    ("JUPYTERHUB_SSL_CERTFILE", "set: the health check speaks HTTPS"),
    ("NB_USER", "the user to become when started as root (jovyan); home /home/NB_USER"),
    ("NB_UID", "that user's uid (1000)"),
    ("NB_GID", "that user's gid (100)"),
    ("CHOWN_HOME", "yes: give the whole home to NB_UID:NB_GID, not only it and its work folder"),
    ("RPROXY_HOME_ROOT", "where homes are (/home)"),
    ("RPROXY_ALLOW_ROOT", "yes: stay root instead of dropping to NB_USER"),
)  # fmt: skip


def mode(environ: Mapping[str, str]) -> tuple[str, str]:
    """("jupyterhub" | "standalone", the reason)."""
    if environ.get("JUPYTERHUB_API_TOKEN"):
        found = [n for n in ("JUPYTERHUB_SERVICE_PREFIX", "JUPYTERHUB_USER") if environ.get(n)]
        if found:
            return "jupyterhub", f"JUPYTERHUB_API_TOKEN and {' and '.join(found)} are set"
        return "standalone", "JUPYTERHUB_API_TOKEN is set, but no JUPYTERHUB_SERVICE_PREFIX or USER"
    return "standalone", "no JUPYTERHUB_API_TOKEN"


def prepare_user(environ: Mapping[str, str]) -> dict[str, str]:
    """As root: make the user's home theirs and drop to that user; return the new environment."""
    user = environ.get("NB_USER", "jovyan")
    uid = int(environ.get("NB_UID", "1000"))
    gid = int(environ.get("NB_GID", "100"))
    home = Path(environ.get("RPROXY_HOME_ROOT", "/home")) / user
    work = home / "work"
    work.mkdir(parents=True, exist_ok=True)
    for path in (home, work):
        os.chown(path, uid, gid)
    if environ.get("CHOWN_HOME", "").lower() in ("yes", "1", "true"):
        for root, dirs, files in os.walk(home):
            for name in dirs + files:
                os.lchown(os.path.join(root, name), uid, gid)
    os.setgroups([gid])
    os.setgid(gid)
    os.setuid(uid)
    if os.getuid() != uid or os.geteuid() != uid:
        raise SystemExit(f"rproxy-entrypoint: could not become uid {uid}")
    logger.info("running as %s (uid %d, gid %d), home %s", user, uid, gid, home)
    return {**environ, "HOME": str(home), "USER": user, "LOGNAME": user}


def main(argv: Sequence[str] | None = None, environ: Mapping[str, str] | None = None) -> None:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s %(message)s")
    args = list(sys.argv[1:] if argv is None else argv) or list(DEFAULT_COMMAND)
    env = dict(os.environ if environ is None else environ)
    name, why = mode(env)
    logger.info("%s mode: %s", name, why)
    if os.geteuid() == 0:
        if env.get("RPROXY_ALLOW_ROOT", "").lower() in ("yes", "1", "true"):
            logger.warning("RPROXY_ALLOW_ROOT is set: staying root")
        else:
            env = prepare_user(env)
            os.chdir(env["HOME"])
    else:
        logger.info("running as uid %d (%s), as started", os.getuid(), _name(os.getuid()))
    sys.stdout.flush()
    sys.stderr.flush()
    os.execvpe(args[0], args, env)


def _name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return "no passwd entry"


if __name__ == "__main__":
    main()


def healthcheck(environ: Mapping[str, str] | None = None) -> int:
    """``rproxy-healthcheck``, the image's HEALTHCHECK: 0 while rproxy answers below 500.

    Standalone that is api/status's 200 while the app is up (503 when not); under a hub the
    status endpoint wants a login and answers 403, which still says rproxy is serving."""
    env = os.environ if environ is None else environ
    service = urllib.parse.urlsplit(env.get("JUPYTERHUB_SERVICE_URL", "http://127.0.0.1:8080/"))
    scheme = "https" if env.get("JUPYTERHUB_SSL_CERTFILE") else "http"
    url = f"{scheme}://127.0.0.1:{service.port or 8080}{env.get('JUPYTERHUB_SERVICE_PREFIX', '/')}"
    context = ssl._create_unverified_context() if scheme == "https" else None
    try:
        with urllib.request.urlopen(url + "api/status", timeout=4, context=context):
            return 0
    except urllib.error.HTTPError as error:
        return 1 if error.code >= 500 else 0
    except OSError:
        return 1


def healthcheck_main() -> None:
    sys.exit(healthcheck())
