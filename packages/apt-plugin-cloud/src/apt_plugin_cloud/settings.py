"""The ``[plugins.cloud]`` config section: defaults, validation, per-endpoint settings, opening a store.

Example ``apt.toml``::

    [plugins.cloud]
    auto_backup = ["s3://my-bucket/apt", "file://~/backups"]
    concurrency = 4

    [plugins.cloud.s3]
    endpoint_url = "https://minio.example:9000"   # S3-compatible store
    checksum = "sha256"                           # sha256 | md5 | when_supported | when_required

    [plugins.cloud.endpoints."s3://legacy-bucket"] # overrides for URLs starting with this prefix
    checksum = "when_required"
    concurrency = 2

A URL may also carry settings as a query string: ``s3://bucket/prefix?endpoint_url=http://127.0.0.1:8333``.
Credentials are never settings: they come from the environment or the SDK's own credential chain.
"""

from __future__ import annotations

import copy
from urllib.parse import parse_qsl, urlsplit

from apt_core.errors import APTError, redact

from .backends import BUILTIN_BACKENDS, builtin_factory
from .retry import RetryPolicy
from .transfer import TransferOptions

__all__ = ["DEFAULTS", "validate_settings", "cloud_config", "settings_for", "open_store", "transfer_options"]

SCHEME_DEFAULTS = {
    "s3": {"endpoint_url": "", "region": "", "checksum": "sha256", "addressing_style": "auto",
           "multipart_threshold_mb": 64},
    "oss": {"endpoint": "", "region": ""},
    "hf": {"endpoint": "", "repo_type": "model", "private": True},
    "modelscope": {"endpoint": ""},
}
DEFAULTS = {
    "auto_backup": [],
    "default_store": "file://~/.cache/apt-model/backups",
    "concurrency": 4,
    "chunk_size_mb": 16,
    "retry_attempts": 6,
    "fail_on_error": True,
    **copy.deepcopy(SCHEME_DEFAULTS),
    "endpoints": {},
}
CHECKSUM_MODES = ("sha256", "md5", "when_supported", "when_required")
_SECRET_KEYS = ("key", "secret", "token", "password", "credential")


def validate_settings(section: dict) -> dict:
    """Fill defaults and check types; raises APTError naming the bad key (never echoing secret-looking values)."""
    merged = copy.deepcopy(DEFAULTS)
    for key, value in (section or {}).items():
        if key not in merged:
            raise APTError(f"[plugins.cloud] unknown key {key!r} (known: {', '.join(sorted(merged))})")
        if key in SCHEME_DEFAULTS:
            if not isinstance(value, dict):
                raise APTError(f"[plugins.cloud.{key}] must be a table")
            merged[key] = _check_scheme_table(key, value, f"plugins.cloud.{key}")
        else:
            merged[key] = value
    if isinstance(merged["auto_backup"], str):
        merged["auto_backup"] = [u for u in merged["auto_backup"].split(",") if u.strip()]
    if not isinstance(merged["auto_backup"], list) or not all(isinstance(u, str) for u in merged["auto_backup"]):
        raise APTError("[plugins.cloud] auto_backup must be a list of store URLs")
    for url in merged["auto_backup"] + [merged["default_store"]]:
        if "://" not in url:
            raise APTError(f"[plugins.cloud] {redact(url)!r} is not a store URL (e.g. file://~/backups, s3://bucket/x)")
    for key, low, high in (("concurrency", 1, 64), ("chunk_size_mb", 1, 4096), ("retry_attempts", 1, 20)):
        try:
            merged[key] = int(merged[key])
        except (TypeError, ValueError):
            raise APTError(f"[plugins.cloud] {key} must be an integer") from None
        if not low <= merged[key] <= high:
            raise APTError(f"[plugins.cloud] {key} must be between {low} and {high}")
    if not isinstance(merged["endpoints"], dict):
        raise APTError("[plugins.cloud] endpoints must be a table of URL prefix -> settings")
    for prefix, table in merged["endpoints"].items():
        scheme = urlsplit(prefix).scheme
        if scheme not in SCHEME_DEFAULTS or not isinstance(table, dict):
            raise APTError(f"[plugins.cloud.endpoints] {prefix!r}: expected a table for an s3/oss/hf/modelscope URL")
        _check_scheme_table(scheme, table, f"plugins.cloud.endpoints.{prefix!r}", fill=False)
    merged["fail_on_error"] = bool(merged["fail_on_error"])
    return merged


def _check_scheme_table(scheme: str, table: dict, where: str, fill: bool = True) -> dict:
    known = SCHEME_DEFAULTS[scheme]
    for key in table:
        if key == "concurrency":  # per-endpoint override of the global value (absent = global)
            try:
                if not 1 <= int(table[key]) <= 64:
                    raise ValueError
            except (TypeError, ValueError):
                raise APTError(f"[{where}] concurrency must be an integer between 1 and 64") from None
            continue
        if key not in known:
            hint = " (credentials come from the environment, never from config)" \
                if any(s in key.lower() for s in _SECRET_KEYS) else ""
            raise APTError(f"[{where}] unknown key {key!r}{hint}")
    if "checksum" in table and table["checksum"] not in CHECKSUM_MODES:
        raise APTError(f"[{where}] checksum must be one of {', '.join(CHECKSUM_MODES)}")
    return {**known, **table} if fill else dict(table)


def cloud_config() -> dict:
    """The validated ``[plugins.cloud]`` section from apt-core's config (defaults when unavailable)."""
    try:
        from apt_core.config import get_config
    except ImportError:
        return validate_settings({})
    try:
        section = get_config().plugin("cloud")
    except (KeyError, LookupError):
        return validate_settings({})
    return validate_settings(section)


def settings_for(url: str, config: dict | None = None) -> dict:
    """Settings for one store URL: scheme table < matching ``endpoints`` prefixes < URL query string."""
    config = config if config is not None else cloud_config()
    scheme = urlsplit(url).scheme
    settings = {"concurrency": config.get("concurrency", DEFAULTS["concurrency"]), **config.get(scheme, {})}
    for prefix in sorted(config.get("endpoints", {}), key=len):
        if url.split("?")[0].startswith(prefix):
            settings.update(config["endpoints"][prefix])
    query = dict(parse_qsl(urlsplit(url).query))
    if query and scheme in SCHEME_DEFAULTS:
        settings.update(_check_scheme_table(scheme, query, f"query of {redact(url)}", fill=False))
    settings["concurrency"] = int(settings["concurrency"])
    return settings


def transfer_options(config: dict | None = None, progress: bool = True, concurrency: int | None = None) -> TransferOptions:
    config = config if config is not None else cloud_config()
    return TransferOptions(concurrency=concurrency or config["concurrency"], progress=progress,
                           retry=RetryPolicy(max_attempts=config["retry_attempts"]),
                           chunk_size=config["chunk_size_mb"] * 1024 * 1024)


def _factory_for(scheme: str):
    try:
        from apt_core.registry import get_registry
    except ImportError:
        get_registry = None
    if get_registry is not None:
        registry = get_registry("storage")
        # Library use (``from apt_plugin_cloud import open_store``) works even where this plugin is not
        # loaded into the plugin manager; registered schemes (third-party ones too) take precedence.
        if scheme in registry or scheme not in BUILTIN_BACKENDS:
            return registry.get(scheme)
    if scheme not in BUILTIN_BACKENDS:
        raise APTError(f"unknown storage scheme {scheme!r}; known: {', '.join(sorted(BUILTIN_BACKENDS))}")
    return builtin_factory(scheme)


def open_store(url: str, config: dict | None = None):
    """Open the store at *url* through the storage registry (so third-party schemes work too)."""
    from .backends.base import install_log_redaction

    install_log_redaction()
    if "://" not in url:
        url = "file://" + url  # a bare path is a local store
    scheme = urlsplit(url).scheme
    factory = _factory_for(scheme)
    if getattr(factory, "accepts_settings", False):
        return factory(url, settings_for(url, config))
    return factory(url)
