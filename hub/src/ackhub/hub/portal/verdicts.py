"""The verifier's sentences in the reader's language. `ackhub.audit.proofs` answers in English (the API of
`ackhub proof verify` and of every partner's offline check); the portal recognises each sentence's shape and
says it again from the catalogue (keys `vf.*` in ackhub.hub.portal.i18n), keeping every value — ids, digests,
times, keys — exactly as the verifier gave it. A sentence of a shape not listed here is shown as it is:
never a wrong translation, at worst English."""

from __future__ import annotations

import re
from collections.abc import Callable

_ACK_SAYS = {"acknowledged receipt of": "RECEIVED", "accepted": "ACCEPTED", "rejected": "REJECTED"}

# (the sentence's shape, its catalogue key); the first that matches the whole sentence is used
_SENTENCES: list[tuple[re.Pattern[str], str]] = [
    (
        re.compile(
            r"The hub's audit log (?P<origin>'[^']*') held (?P<size>\d+) events at (?P<time>\S+), signed by "
            r"the hub's key (?P<key>\S+?)(?P<unpinned> \(not compared with a pinned hub key: pass --hub-key "
            r"to do so\))?\."
        ),
        "vf.checkpoint",
    ),
    (
        re.compile(
            r"Trusted witnesses cosigned that checkpoint, each having checked it extends every earlier one it "
            r"saw: (?P<names>.+)\."
        ),
        "vf.witnesses",
    ),
    (
        re.compile(
            r"(?P<publisher>\S+) published record (?P<record>\S+) \((?P<type>[^,()]+)(?:, declaration "
            r"(?P<declaration>\w+))?\) with digest (?P<digest>\S+) at (?P<time>\S+); the hub logged it as "
            r"audit event (?P<index>\d+)\."
        ),
        "vf.published",
    ),
    (
        re.compile(r"No acknowledgement from (?:the )?(?P<who>.+) \((?P<agency>[^()]+)\) is in this proof\."),
        "vf.no_ack",
    ),
    (
        re.compile(
            r"(?:The )?(?P<who>.+)'s system \((?P<agency>[^()]+)\) (?P<says>acknowledged receipt of|accepted|"
            r"rejected) record (?P<record>\S+) with digest (?P<digest>\S+) at (?P<time>\S+)(?:, giving the "
            r"reason (?P<reason>.+))?: its signature verifies with key (?P<key>'[^']*'), registered with the "
            r"hub at (?P<key_time>\S+) \(audit event (?P<key_event>\d+)\); the hub logged the acknowledgement "
            r"as audit event (?P<index>\d+)\.",
            re.S,
        ),
        "vf.ack",
    ),
    (
        re.compile(
            r"Case (?P<case>\S+) \((?P<kind>[A-Z_]+)\) about this record was opened by (?P<actor>\S+) at "
            r"(?P<time>\S+); (?P<n>\d+) audited change\(s\) \(audit events (?P<events>[\d, ]+)\), the last: "
            r"(?P<detail>.*) — state (?P<state>[A-Z_]*)\.",
            re.S,
        ),
        "vf.case",
    ),
    (re.compile(r"the document is malformed: (?P<why>.*)", re.S), "vf.malformed"),
    (re.compile(r"not a (?P<format>\S+) document \(format (?P<got>.*)\)", re.S), "vf.not_format"),
    (re.compile(r"the hub's checkpoint does not verify: (?P<why>.*)", re.S), "vf.checkpoint_bad"),
    (re.compile(r"the checkpoint's signed note is not of this checkpoint"), "vf.note_bad"),
    (re.compile(r"the checkpoint is (?P<why>.*)", re.S), "vf.witness_shortfall"),
    (
        re.compile(r"audit event (?P<index>\d+): its inclusion proof does not lead to the checkpoint's root"),
        "vf.inclusion_bad",
    ),
    (re.compile(r"audit event (?P<index>\d+): its data names leaf (?P<leaf>\S+)"), "vf.leaf_bad"),
    (re.compile(r"(?P<what>.+): no verified audit event records it", re.S), "vf.unlogged"),
    (
        re.compile(
            r"publication of record (?P<record>\S+): the document does not match what the hub logged in "
            r"audit event (?P<index>\d+) \((?P<fields>.*)\)",
            re.S,
        ),
        "vf.publication_differs",
    ),
    (
        re.compile(
            r"(?P<what>.+): audit event (?P<index>\d+) is a (?P<kind>'[^']*') event that does not match "
            r"\((?P<fields>.*)\)",
            re.S,
        ),
        "vf.event_differs",
    ),
    (re.compile(r"(?P<what>.+): the agency key is not an Ed25519 public key", re.S), "vf.key_bad"),
    (
        re.compile(r"(?P<what>.+): the signature does not verify with key (?P<key>'[^']*')", re.S),
        "vf.signature_bad",
    ),
]

# what a failure is about ("{what}: …")
_SUBJECTS: list[tuple[re.Pattern[str], str]] = [
    (re.compile(r"publication of record (?P<record>\S+)"), "vf.what.publication"),
    (re.compile(r"registration of agency (?P<agency>\S+)"), "vf.what.agency"),
    (
        re.compile(
            r"(?P<agency>[^' ]+)'s (?P<status>[A-Z]+) acknowledgement: registration of key (?P<key>.+)"
        ),
        "vf.what.ack_key",
    ),
    (re.compile(r"(?P<agency>[^' ]+)'s (?P<status>[A-Z]+) acknowledgement"), "vf.what.ack"),
    (re.compile(r"case (?P<case>\S+)"), "vf.what.case"),
]


def _subject(what: str, t: Callable[..., str]) -> str:
    for pattern, key in _SUBJECTS:
        found = pattern.fullmatch(what)
        if found:
            return t(key, **found.groupdict())
    return what


def say(sentence: str, lang: str, t: Callable[..., str]) -> str:
    """`sentence` of the verifier in `lang` (English: as the verifier said it)."""
    if lang != "zh":
        return sentence
    for pattern, key in _SENTENCES:
        found = pattern.fullmatch(sentence)
        if found is None:
            continue
        values = {k: v or "" for k, v in found.groupdict().items()}
        if "what" in values:
            values["what"] = _subject(values["what"], t)
        if key == "vf.checkpoint":
            values["unpinned"] = t("vf.unpinned") if values["unpinned"] else ""
        if key == "vf.published":
            values["declaration"] = (
                t("vf.declaration", number=values["declaration"]) if values["declaration"] else ""
            )
        if key == "vf.ack":
            values["says"] = t("vf.says." + _ACK_SAYS[values["says"]])
            values["reason"] = t("vf.reason", reason=values["reason"]) if values["reason"] else ""
        return t(key, **values)
    return sentence
