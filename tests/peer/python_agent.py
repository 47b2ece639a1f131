"""The reference Python agent, rekuest-next 2.3.1 unmodified, serving `add` on a rekuest server.

Used as the peer the end-to-end test (`tests/tests/all/python_peer.rs`) and the benchmark suite
compare `rekuest-host` against:

    python tests/peer/python_agent.py --graphql http://127.0.0.1:PORT/graphql \
        --agent-socket ws://127.0.0.1:PORT/agi --token TOKEN [--instance-id NAME]

It is built the way rekuest-next's own Arkitekt service (`rekuest_next/arkitekt.py`) builds
one, minus fakts: a `RekuestNextRath` over rath's `ComposedAuthLink` (a static bearer token)
and `AIOHttpLink` (GraphQL over HTTP), a `RekuestAgent` on a `WebsocketAgentTransport`, and
`RekuestNext` tying them together with a `GraphQLPostman`. `add` is registered on the
agent's own app registry with rekuest-next's defaults (a sync function: run in a worker
thread, serial). Starting runs `ensureAgent`/`implementAgent` over GraphQL, then REGISTER and
SESSION_INIT on the socket.

`READY` goes to stdout (flushed) once `RekuestNext.aconnect` returned, i.e. the server
answered REGISTER with INIT; then it serves until killed. Only warnings and errors are logged
(stderr).

Requires, next to `rekuest-next==2.3.1`, what it imports without declaring: `aiohttp`,
`attrs`, `certifi`.
"""

import argparse
import asyncio
import logging
import sys

from rath.links.aiohttp import AIOHttpLink
from rath.links.auth import ComposedAuthLink
from rath.links.compose import compose
from rekuest_next.agents.base import RekuestAgent
from rekuest_next.agents.transport.websocket import WebsocketAgentTransport
from rekuest_next.postmans.graphql import GraphQLPostman
from rekuest_next.rath import RekuestNextRath
from rekuest_next.rekuest import RekuestNext


def add(a: int, b: int) -> int:
    """Add two numbers."""
    return a + b


def build(graphql: str, agent_socket: str, token: str, name: str) -> RekuestNext:
    """The client: GraphQL over rath with a bearer token, the agent on the websocket."""

    async def load_token() -> str:
        return token

    rath = RekuestNextRath(
        link=compose(
            ComposedAuthLink(token_loader=load_token, token_refresher=load_token),
            AIOHttpLink(endpoint_url=graphql),
        )
    )
    agent = RekuestAgent(
        transport=WebsocketAgentTransport(
            endpoint_url=agent_socket, token_loader=load_token
        ),
        rath=rath,
        name=name,
    )
    rekuest = RekuestNext(rath=rath, agent=agent, postman=GraphQLPostman(rath=rath))
    rekuest.register(add)
    return rekuest


async def serve(rekuest: RekuestNext) -> None:
    async with rekuest:
        await rekuest.aconnect()
        print("READY", flush=True)
        await rekuest.aloop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphql", required=True, help="http(s)://HOST/graphql")
    parser.add_argument("--agent-socket", required=True, help="ws(s)://HOST/agi")
    parser.add_argument("--token", required=True)
    parser.add_argument("--instance-id", default="python-peer", help="the agent's name")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    rekuest = build(args.graphql, args.agent_socket, args.token, args.instance_id)
    try:
        asyncio.run(serve(rekuest))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
