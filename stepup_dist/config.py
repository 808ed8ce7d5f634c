"""One frozen, validated configuration object built from flags, environment and defaults.

Precedence: command line, then `STEPUP_DIST_*` environment variables, then defaults.
Every problem is reported at once in a single `ConfigError`. `to_environ` turns a config
back into those variables, for the processes a build or a worker starts.
"""

import os
import re
import stat
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from urllib.parse import unquote, urlsplit, urlunsplit

from .errors import ConfigError, NoServer
from .pathmap import PathMap, parse_path_map
from .signing import DEFAULT_TTL, Keyring

__all__ = (
    "DEFAULT_LEASE",
    "DEFAULT_PREFIX",
    "Config",
    "load_config",
    "parse_resources",
    "redact",
    "split_password",
    "step_environ",
    "to_environ",
)

DEFAULT_PREFIX = "stepup"
DEFAULT_LEASE = 30.0
MIN_SECRET = 16
"""Characters a secret needs at least; `openssl rand -hex 32` makes a good one."""

# RQ accepts only these characters in RQ_KEY_PREFIX; ours becomes part of it.
_PREFIX_RE = re.compile(r"[A-Za-z0-9_.:-]+")
_URL_SCHEMES = ("redis://", "rediss://", "unix://", "valkey://", "valkeys://")
_TLS_SCHEMES = ("rediss://", "valkeys://")


def split_password(url: str) -> tuple[str, str | None]:
    """The URL without its password, and the password, %-decoded as redis-py reads it."""
    parts = urlsplit(url)
    if parts.password is None:
        return url, None
    user = parts.username or ""
    host = parts.netloc.rsplit("@", 1)[1]
    netloc = f"{user}@{host}" if user else host
    return urlunsplit(parts._replace(netloc=netloc)), unquote(parts.password)


def redact(url: str) -> str:
    """The URL with its password shown as `***`, for messages."""
    if "@" in url and "://" in url:
        scheme, rest = url.split("://", 1)
        creds, host = rest.rsplit("@", 1)
        user = creds.split(":", 1)[0]
        return f"{scheme}://{user}:***@{host}" if ":" in creds else f"{scheme}://{user}@{host}"
    return url


@dataclass(frozen=True)
class Config:
    """Settings shared by the planner, the workers and the plan API client."""

    redis_url: str | None = field(repr=False)
    """Server URL; None means: start an embedded server for this build."""

    prefix: str
    """The Redis keys of one person or group start with this prefix and a colon."""

    lease: float
    """Seconds a pool slot stays held without renewal (`STEPUP_DIST_LEASE`)."""

    reconnect: float = 60.0
    """Seconds the planner keeps trying to reach a server that went away
    (`STEPUP_DIST_RECONNECT`)."""

    fs_wait: float = 60.0
    """Seconds a worker waits for inputs the shared filesystem does not show yet
    (`STEPUP_DIST_FS_WAIT`)."""

    redis_password: str | None = field(default=None, repr=False)
    """Password given apart from the URL (`STEPUP_DIST_REDIS_PASSWORD`); wins over the URL's."""

    tls_ca: str | None = None
    """CA certificate file that the server's certificate must chain to (`--tls-ca`)."""

    tls_cert: str | None = None
    """Client certificate file, for servers that ask for one (`--tls-cert`)."""

    tls_key: str | None = None
    """Private key of the client certificate (`--tls-key`)."""

    secret_file: str | None = None
    """File with one or two shared secrets (`STEPUP_DIST_SECRET_FILE`); None: no signing."""

    secrets: tuple[bytes, ...] = field(default=(), repr=False)
    """The secrets read from `secret_file`: the first signs, either verifies."""

    signature_ttl: float = DEFAULT_TTL
    """Seconds a signed payload stays valid (`STEPUP_DIST_SIGNATURE_TTL`)."""

    roots: tuple[str, ...] = ()
    """Directories (symlinks resolved) a worker serves; empty: any (`--root`)."""

    path_map: PathMap = field(default_factory=PathMap)
    """Where a worker finds the planner's paths (`--path-map`, `STEPUP_DIST_PATH_MAP`)."""

    shared_prefix: str | None = None
    """Prefix of the keys several prefixes share: cluster pools and host resources
    (`STEPUP_DIST_SHARED_PREFIX`); None: `prefix`."""

    give_up: float | None = None
    """Seconds a build waits while no connected worker serves its folder, then ends with
    its steps stuck (`STEPUP_DIST_GIVE_UP`); None: wait as long as it takes."""

    cache: str | None = None
    """Folder of the shared step cache's blobs, which every worker mounts (`--cache`,
    `STEPUP_DIST_CACHE`); None: no cache (docs/cache.md)."""

    cache_trust: tuple[bytes, ...] = field(default=(), repr=False)
    """Cache keys of others whose entries a build uses (files in `STEPUP_DIST_CACHE_TRUST`)."""

    cache_trust_files: tuple[str, ...] = ()
    """The files those keys were read from (passed on to local workers' environment)."""

    def server(self, what: str) -> str:
        """The server URL; `NoServer` (one line naming `what`) when none was given."""
        if self.redis_url is None:
            raise NoServer(what)
        return self.redis_url

    def embedded(self, url: str) -> "Config":
        """These settings for a build's embedded server at `url`, which takes no password
        and no TLS."""
        return replace(
            self,
            redis_url=url,
            redis_password=None,
            tls_ca=None,
            tls_cert=None,
            tls_key=None,
        )

    @property
    def keyring(self) -> Keyring | None:
        return Keyring(self.secrets, self.signature_ttl) if self.secrets else None


def _read_secrets(path: str, problems: list[str]) -> tuple[bytes, ...]:
    where = f"secret file {path} (STEPUP_DIST_SECRET_FILE)"
    try:
        with open(path, "rb") as fh:
            st = os.fstat(fh.fileno())
            data = fh.read(64 * 1024)
    except OSError as exc:
        problems.append(f"cannot read {where}: {exc.strerror}")
        return ()
    if not stat.S_ISREG(st.st_mode):
        problems.append(f"{where} is not a regular file")
        return ()
    if st.st_mode & 0o077:
        mode = oct(stat.S_IMODE(st.st_mode))
        problems.append(f"{where} must be readable only by its owner (mode {mode}; chmod 600 it)")
        return ()
    if st.st_uid != os.geteuid():
        problems.append(f"{where} must belong to the user running stepup-dist")
        return ()
    secrets = tuple(line.strip() for line in data.splitlines() if line.strip())
    if not 1 <= len(secrets) <= 2:
        problems.append(f"{where} must hold one or two secrets, one per line")
        return ()
    if any(len(s) < MIN_SECRET for s in secrets):
        problems.append(f"each secret in {where} needs at least {MIN_SECRET} characters")
        return ()
    return secrets


def _number(raw: object, name: str, low: float, high: float, problems: list[str]) -> float:
    try:
        value = float(raw)  # type: ignore[arg-type]
    except (TypeError, ValueError):
        what = name.rsplit("_", 1)[-1].lower()
        problems.append(f"{what} {raw!r} is not a number of seconds ({name})")
        return low
    if not low <= value <= high:
        what = name.removeprefix("STEPUP_DIST_").replace("_", " ").lower()
        problems.append(f"{what} {raw!r} must lie between {low:.10g} and {high:.10g} seconds")
    return value


def _file(flag: str | None, env: Mapping[str, str], name: str, problems: list[str]) -> str | None:
    path = flag or env.get(name) or None
    if path is not None and not os.path.isfile(path):
        problems.append(f"{path} is not a readable file ({name})")
    return path


def load_config(
    *,
    redis_url: str | None = None,
    prefix: str | None = None,
    lease: float | str | None = None,
    tls_ca: str | None = None,
    tls_cert: str | None = None,
    tls_key: str | None = None,
    roots: Sequence[str] = (),
    path_map: Sequence[str] = (),
    shared_prefix: str | None = None,
    give_up: float | str | None = None,
    cache: str | None = None,
    no_cache: bool = False,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Merge explicit values (from flags) with the environment and defaults, then validate."""
    env = os.environ if environ is None else environ
    problems: list[str] = []

    url = redis_url or env.get("STEPUP_DIST_REDIS_URL") or None
    if url is not None and not url.startswith(_URL_SCHEMES):
        problems.append(
            f"Redis URL {redact(url)!r} must start with one of {', '.join(_URL_SCHEMES)}"
        )

    pfx = prefix or env.get("STEPUP_DIST_PREFIX") or DEFAULT_PREFIX
    if not _PREFIX_RE.fullmatch(pfx):
        problems.append(
            f"prefix {pfx!r} may only contain letters, digits and _ . : - (STEPUP_DIST_PREFIX)"
        )

    shared = shared_prefix or env.get("STEPUP_DIST_SHARED_PREFIX") or None
    if shared is not None and not _PREFIX_RE.fullmatch(shared):
        problems.append(
            f"shared prefix {shared!r} may only contain letters, digits and _ . : - "
            "(STEPUP_DIST_SHARED_PREFIX)"
        )
    if shared == pfx:
        shared = None

    raw_give_up = give_up if give_up is not None else env.get("STEPUP_DIST_GIVE_UP") or None
    give_up_value = None
    if raw_give_up is not None:
        give_up_value = _number(raw_give_up, "STEPUP_DIST_GIVE_UP", 0.0, 30 * 86400.0, problems)

    raw_lease = lease if lease is not None else env.get("STEPUP_DIST_LEASE", DEFAULT_LEASE)
    lease_value = _number(raw_lease, "STEPUP_DIST_LEASE", 1.0, 86400.0, problems)

    ca = _file(tls_ca, env, "STEPUP_DIST_TLS_CA", problems)
    cert = _file(tls_cert, env, "STEPUP_DIST_TLS_CERT", problems)
    key = _file(tls_key, env, "STEPUP_DIST_TLS_KEY", problems)
    if (cert is None) != (key is None):
        problems.append("--tls-cert and --tls-key go together (STEPUP_DIST_TLS_CERT, _KEY)")
    if (ca or cert or key) and not (url or "").startswith(_TLS_SCHEMES):
        problems.append("TLS options need a rediss:// or valkeys:// server URL")

    secret_file = env.get("STEPUP_DIST_SECRET_FILE") or None
    secrets = () if secret_file is None else _read_secrets(secret_file, problems)
    raw_ttl = env.get("STEPUP_DIST_SIGNATURE_TTL", DEFAULT_TTL)
    ttl = _number(raw_ttl, "STEPUP_DIST_SIGNATURE_TTL", 60.0, 30 * 86400.0, problems)

    given_roots = list(roots) or [r for r in env.get("STEPUP_DIST_ROOTS", "").split(":") if r]
    real_roots = []
    for root in given_roots:
        if not os.path.isdir(root):
            problems.append(f"root {root} is not a directory (--root, STEPUP_DIST_ROOTS)")
        else:
            real_roots.append(os.path.realpath(root))

    given_maps = list(path_map) or [
        m for m in env.get("STEPUP_DIST_PATH_MAP", "").split(":") if m.strip()
    ]
    maps = parse_path_map(given_maps, problems)

    raw_reconnect = env.get("STEPUP_DIST_RECONNECT", "60")
    try:
        reconnect = float(raw_reconnect)
        if reconnect < 0:
            raise ValueError
    except ValueError:
        reconnect = 60.0
        problems.append(
            f"reconnect {raw_reconnect!r} is not a number of seconds >= 0 (STEPUP_DIST_RECONNECT)"
        )

    fs_wait = _number(
        env.get("STEPUP_DIST_FS_WAIT", 60.0), "STEPUP_DIST_FS_WAIT", 0.0, 86400.0, problems
    )

    # The cache: off unless a folder is given; --no-cache (or STEPUP_DIST_NO_CACHE=1) wins.
    off = no_cache or env.get("STEPUP_DIST_NO_CACHE", "") not in ("", "0")
    cache_dir = None if off else (cache or env.get("STEPUP_DIST_CACHE") or None)
    if cache_dir is not None:
        cache_dir = os.path.abspath(cache_dir)
        if os.path.exists(cache_dir) and not os.path.isdir(cache_dir):
            problems.append(f"cache {cache_dir} is not a folder (--cache, STEPUP_DIST_CACHE)")
    trust_files = tuple(f for f in env.get("STEPUP_DIST_CACHE_TRUST", "").split(":") if f)
    trusted: tuple[bytes, ...] = ()
    if trust_files:
        from .cache_entry import read_trusted_keys

        try:
            trusted = read_trusted_keys(trust_files)
        except ConfigError as exc:
            problems.append(str(exc))

    if problems:
        raise ConfigError("; ".join(problems))
    return Config(
        cache=cache_dir,
        cache_trust=trusted,
        cache_trust_files=tuple(os.path.abspath(f) for f in trust_files),
        fs_wait=fs_wait,
        redis_url=url,
        prefix=pfx,
        shared_prefix=shared,
        give_up=give_up_value,
        lease=lease_value,
        reconnect=reconnect,
        redis_password=env.get("STEPUP_DIST_REDIS_PASSWORD") or None,
        tls_ca=ca,
        tls_cert=cert,
        tls_key=key,
        secret_file=secret_file,
        secrets=secrets,
        signature_ttl=ttl,
        roots=tuple(dict.fromkeys(real_roots)),
        path_map=maps,
    )


def to_environ(config: Config, *, with_password: bool = True) -> dict[str, str]:
    """The `STEPUP_DIST_*` variables that give a child process this configuration.

    Without `with_password`, the URL loses its password, which moves to
    `STEPUP_DIST_REDIS_PASSWORD`, so that printing the URL shows no password.
    """
    env: dict[str, str] = {
        "STEPUP_DIST_PREFIX": config.prefix,
        "STEPUP_DIST_LEASE": str(config.lease),
        "STEPUP_DIST_SIGNATURE_TTL": str(config.signature_ttl),
        "STEPUP_DIST_RECONNECT": str(config.reconnect),
        "STEPUP_DIST_FS_WAIT": str(config.fs_wait),
    }
    password = config.redis_password
    if config.redis_url is not None:
        url = config.redis_url
        if not with_password:
            url, in_url = split_password(url)
            password = password or in_url
        env["STEPUP_DIST_REDIS_URL"] = url
    if password is not None:
        env["STEPUP_DIST_REDIS_PASSWORD"] = password
    for name, value in (
        ("STEPUP_DIST_TLS_CA", config.tls_ca),
        ("STEPUP_DIST_TLS_CERT", config.tls_cert),
        ("STEPUP_DIST_TLS_KEY", config.tls_key),
        ("STEPUP_DIST_SECRET_FILE", config.secret_file),
    ):
        if value is not None:
            env[name] = os.path.abspath(value)
    if config.shared_prefix is not None:
        env["STEPUP_DIST_SHARED_PREFIX"] = config.shared_prefix
    if config.give_up is not None:
        env["STEPUP_DIST_GIVE_UP"] = str(config.give_up)
    if config.roots:
        env["STEPUP_DIST_ROOTS"] = ":".join(config.roots)
    if config.path_map:
        env["STEPUP_DIST_PATH_MAP"] = config.path_map.text()
    if config.cache is not None:
        env["STEPUP_DIST_CACHE"] = config.cache
    if config.cache_trust_files:
        env["STEPUP_DIST_CACHE_TRUST"] = ":".join(config.cache_trust_files)
    return env


_STEP_VARS = (
    "STEPUP_DIST_REDIS_URL",
    "STEPUP_DIST_REDIS_PASSWORD",
    "STEPUP_DIST_PREFIX",
    "STEPUP_DIST_TLS_CA",
    "STEPUP_DIST_TLS_CERT",
    "STEPUP_DIST_TLS_KEY",
    "STEPUP_DIST_SECRET_FILE",
    "STEPUP_DIST_SIGNATURE_TTL",
    # A plan run on a worker with path maps names absolute paths as the planner does.
    "STEPUP_DIST_PATH_MAP",
)


def step_environ(config: Config) -> dict[str, str]:
    """What a step needs for API calls: the URL without its password, which goes apart."""
    env = to_environ(config, with_password=False)
    return {name: env[name] for name in _STEP_VARS if name in env}


def parse_resources(text: str | None, *, bare: bool = False, zero: bool = False) -> dict[str, int]:
    """`gpu:2,mem:64` -> {"gpu": 2, "mem": 64}; UserError for anything else.

    As StepUp 4 reads them: with `bare`, a name alone means one unit (`gpu` is `gpu:1`);
    with `zero`, 0 units are allowed (a build declaring `gpu:0` has none).
    """
    result: dict[str, int] = {}
    low = 0 if zero else 1
    for item in (text or "").split(","):
        if not item.strip():
            continue
        name, sep, units = item.strip().partition(":")
        if bare and not sep:
            units = "1"
        units = units.strip()
        name = name.strip()
        if not units.isdigit() or int(units) < low or not name or "=" in name:
            raise ConfigError(f"resources: {item.strip()!r} is not NAME:UNITS with UNITS >= {low}")
        result[name] = int(units)
    return result
