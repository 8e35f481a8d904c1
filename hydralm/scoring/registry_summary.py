"""What a registry holds, for the people running it: `hydralm registry show URI`.

Reads the manifest and the current bundle's config only (no weights, no head files, no index
shards), so it costs the same for a thousand users as for a million.
"""

from __future__ import annotations

from typing import Any

from hydralm.artifacts import Registry
from hydralm.model import ModelConfig
from hydralm.scoring.bundle import pairs_warning, read_bundle_config

__all__ = ["format_summary", "summarize_registry"]


def summarize_registry(registry: Registry) -> dict[str, Any]:
    """The registry's current base and, per kind, its head form, head count (every head in the
    index), whether a global head on that base, and the training run; the zero-fit router; and
    warnings (an adapter trained on other pairs)."""
    manifest = registry.manifest()
    out: dict[str, Any] = {"uri": registry.storage.uri, "manifest_version": manifest.version,
                           "base_version": manifest.base_version, "bases": len(manifest.bases),
                           "index_shards": manifest.shards, "kinds": {}, "zero_fit": None,
                           "warnings": []}
    if manifest.base_version is None:
        return out
    config = read_bundle_config(registry, manifest.base_version)
    for kind, entry in sorted(config.get("kinds", {}).items()):
        model = ModelConfig.from_dict(entry["model"], source=f"{kind} base config")
        info = dict(entry.get("info") or {})
        out["kinds"][kind] = {
            "head": model.head.model_dump(mode="json"), "dim": entry.get("dim"),
            "encoder": model.encoder_path or "all-MiniLM-L6-v2 (the default)",
            "max_length": model.max_length,
            # every head in the index, those left on an older base (until refitted) included
            "heads": registry.head_count(kind, manifest),
            "global_head": getattr(manifest.global_heads.get(kind), "base_version",
                                   None) == manifest.base_version,
            "info": info}
        if kind == "adapter" and (warning := pairs_warning(entry)) is not None:
            out["warnings"].append(warning)
    router = config.get("zero_fit")
    if router is not None:
        out["zero_fit"] = {"users": len(router.get("users", [])), "k": router.get("k"),
                           "k_by_kind": router.get("k_by_kind", {})}
    return out


def _head(head: dict[str, Any]) -> str:
    rank = f" r={head['rank']}" if head["form"] != "dense" else ""
    return f"{head['form']}{rank} {head['dtype']}"


def format_summary(summary: dict[str, Any]) -> str:
    """`summarize_registry`'s result as lines for a terminal."""
    lines = [f"registry {summary['uri']} (manifest version {summary['manifest_version']}, "
             f"{summary['index_shards']} index shards per kind)"]
    if summary["base_version"] is None:
        lines.append("no base published yet: run `hydralm train` (or `hydralm demo`)")
        return "\n".join(lines)
    lines.append(f"current base {summary['base_version']} ({summary['bases']} published)")
    for kind, k in summary["kinds"].items():
        info = k["info"]
        trained = f"run {info['run']}" if info.get("run") else "no training run recorded"
        if "pairs" in info:
            trained += f", pairs {info['pairs']}"
        lines.append(f"  {kind}: {k['heads']} user heads ({_head(k['head'])}), "
                     f"{'a' if k['global_head'] else 'no'} global head on it; {trained}; encoder "
                     f"{k['encoder']}, max_length {k['max_length']}")
    router = summary["zero_fit"]
    if router is None:
        lines.append("  zero-fit heads: none (the bundle holds no router)")
    else:
        by_kind = ", ".join(f"{kind} {k}" for kind, k in sorted(router["k_by_kind"].items()))
        lines.append(f"  zero-fit heads: mixtures over {router['users']} training users' heads, "
                     f"k {router['k']}" + (f" ({by_kind})" if by_kind else ""))
    lines += [f"warning: {w}" for w in summary["warnings"]]
    return "\n".join(lines)
