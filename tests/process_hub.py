"""`ackhub serve` as a real subprocess, for tests that kill and restart it: the hub's own launcher
(`ackhub.hub.launch.HubProcess`) on a TOML configuration written from a config dict, on a free loopback
port."""

from __future__ import annotations

import json
import socket
import tomllib
from pathlib import Path
from typing import Any

from ackhub.hub import launch

REPO = Path(__file__).resolve().parent.parent
FAST_RECONNECT = launch.FAST_RECONNECT


def free_port() -> int:
    """A port that nothing on 127.0.0.1 listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _toml_value(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)  # a JSON string is a valid TOML basic string
    if isinstance(value, list):
        return "[" + ", ".join(_toml_value(item) for item in value) + "]"
    raise TypeError(f"cannot write {type(value).__name__} as a TOML value")


def _is_table_array(value: Any) -> bool:
    return isinstance(value, list) and bool(value) and all(isinstance(item, dict) for item in value)


def _toml_lines(table: dict[str, Any], path: str) -> list[str]:
    lines = [
        f"{key} = {_toml_value(value)}"
        for key, value in table.items()
        if not isinstance(value, dict) and not _is_table_array(value)
    ]
    for key, value in table.items():
        name = f"{path}.{key}" if path else key
        if isinstance(value, dict):
            lines += ["", f"[{name}]", *_toml_lines(value, name)]
        elif _is_table_array(value):
            for item in value:
                lines += ["", f"[[{name}]]", *_toml_lines(item, name)]
    return lines


def to_toml(config: dict[str, Any]) -> str:
    """TOML for a configuration dict (tables, arrays of tables, strings, numbers, booleans, lists)."""
    text = "\n".join(_toml_lines(config, "")).lstrip("\n") + "\n"
    if tomllib.loads(text) != config:
        raise ValueError("the configuration does not survive a TOML round trip")
    return text


class HubProcess(launch.HubProcess):
    """`ackhub serve` of a configuration dict written to `workdir/hub.toml`, its log in `workdir/hub.log`."""

    def __init__(self, config: dict[str, Any], workdir: Path, args: list[str] | None = None) -> None:
        self.config_path = workdir / "hub.toml"
        self.config_path.write_text(to_toml(config), encoding="utf-8")
        self.log_path = workdir / "hub.log"
        super().__init__(self.config_path, self.log_path, args or (), target=config["server"]["listen"])
