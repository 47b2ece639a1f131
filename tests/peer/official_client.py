"""The official client's (rekuest-next) structure serialization against this host's wire.

Run with the Python that has rekuest-next 2.3.1 installed (tests/tests/all/python_peer.rs):

    official_client.py DEFINITIONS shrink ACTION   prints ACTION's args as the client sends them
    official_client.py DEFINITIONS expand ACTION   reads ACTION's returns (JSON) on stdin and
                                                  prints what the client makes of them

DEFINITIONS is the file `rekuest-host inspect examples/structures --json` wrote. The values are
fixed per action (an `Image` structure and a `Labelled` model, as in examples/structures).
"""

import asyncio
import dataclasses
import json
import sys
from types import SimpleNamespace
from typing import Any

from rekuest_next.api.schema import PortKind
from rekuest_next.structures.registry import StructureRegistry
from rekuest_next.structures.serialization.expand import aexpand_returns
from rekuest_next.structures.serialization.shrink import ashrink_args


@dataclasses.dataclass
class Image:
    id: int


@dataclasses.dataclass
class Labelled:
    image: Image
    label: str


async def shrink_image(image: Image) -> str:
    return f"image:{image.id}"


async def expand_image(reference: str) -> Image:
    return Image(int(reference.removeprefix("image:")))


def registry() -> StructureRegistry:
    structures = StructureRegistry()
    structures.register_as_structure(Image, "@mikro/image", expand_image, shrink_image)
    structures.register_as_model(Labelled, "Labelled")
    return structures


def port(description: dict[str, Any]) -> SimpleNamespace:
    """A port the client's serialization walks, from this host's definition JSON."""
    return SimpleNamespace(
        key=description["key"],
        kind=PortKind(description["kind"]),
        nullable=description.get("nullable", False),
        identifier=description.get("identifier"),
        children=[port(child) for child in description.get("children", [])] or None,
        choices=description.get("choices"),
        default=description.get("default"),
    )


def definition(path: str, action: str) -> SimpleNamespace:
    with open(path, encoding="utf-8") as file:
        described = {entry["key"]: entry for entry in json.load(file)}[action]
    return SimpleNamespace(
        args=[port(arg) for arg in described["args"]],
        returns=[port(ret) for ret in described["returns"]],
    )


ARGS = {
    "crop": {"image": Image(42), "width": 10},
    "label": {"images": {"b": Image(2), "a": Image(1)}},
    "by_label": {"labelled": [Labelled(Image(1), "a"), Labelled(Image(2), "b")]},
}


async def main(path: str, mode: str, action: str) -> None:
    action_definition = definition(path, action)
    if mode == "shrink":
        args = await ashrink_args(action_definition, (), ARGS[action], registry())
        print(json.dumps(args, sort_keys=True))
    else:
        returns = json.loads(sys.stdin.read())
        expanded = await aexpand_returns(action_definition, returns, registry())
        print(repr(list(expanded)))


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:4]))
