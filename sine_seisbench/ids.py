"""One identifier scheme for everything SINE writes (QuakeML, monitor messages, archive catalogs).

Every id is ``smi:sine-seisbench/<kind>/<key>``: ``<key>`` is the first 16 hex digits of the SHA-1 of a seed
that names the object (e.g. an event's origin time and P picks, a pick's trace, phase and time), so the same
input gives the same ids in ``classify``, the monitor and the archive, on any machine; or, for containers that
are named by what they hold (a day's catalog, an archive chunk), that name itself.
"""

from __future__ import annotations

import hashlib

from obspy.core.event import ResourceIdentifier

#: Agency id, default author and id namespace of everything SINE writes.
AGENCY = "sine-seisbench"


def stable_id(kind: str, seed: str) -> str:
    """``smi:sine-seisbench/<kind>/<sha1(seed)[:16]>``: a deterministic id of an object named by ``seed``."""
    return f"smi:{AGENCY}/{kind}/{hashlib.sha1(seed.encode()).hexdigest()[:16]}"


def named_id(kind: str, name: str) -> str:
    """``smi:sine-seisbench/<kind>/<name>``: the id of a container named by what it holds (e.g. a day)."""
    return f"smi:{AGENCY}/{kind}/{name}"


def resource_id(kind: str, seed: str) -> ResourceIdentifier:
    """:func:`stable_id` as an ObsPy ``ResourceIdentifier``."""
    return ResourceIdentifier(stable_id(kind, seed))


def is_ours(resource: object) -> bool:
    """Whether a resource id (or its string) is in SINE's namespace."""
    return resource is not None and str(getattr(resource, "id", resource)).startswith(
        f"smi:{AGENCY}/"
    )


__all__ = ["AGENCY", "is_ours", "named_id", "resource_id", "stable_id"]
