"""The official client (rekuest-next 2.3.1, unmodified) calling actions on a rekuest server.

Run with the Python that has rekuest-next 2.3.1 installed (tests/tests/all/python_caller.rs):

    official_caller.py --graphql http://HOST/graphql --subscriptions ws://HOST/graphql --token T

The client is put together the way rekuest-next's own Arkitekt service builds one, minus
fakts: a `RekuestNextRath` whose `SplitLink` sends queries and mutations over `AIOHttpLink`
and subscriptions over `GraphQLWSLink` (subprotocol `graphql-ws`), behind a static bearer
token, and a `GraphQLPostman` (the `assign` mutation plus the `mytasks` subscription).

It finds actions by key (`find` with `matching`), then prints one JSON line per step:
    {"step": "add", "value": 42}                     call add(a=20, b=22)
    {"step": "count", "value": [1, 2, 3]}             iterate the generator count(n=3)
    {"step": "divide", "error": "..."}                divide(1, 0) fails: ErrorCallError
    {"step": "cancel", "ticks": 1}                    ticks(n=1000) cancelled after its first tick
and exits 0; anything unexpected raises (exit 1, traceback on stderr).
"""

import argparse
import asyncio
import json

from graphql import OperationType
from rath.links.aiohttp import AIOHttpLink
from rath.links.auth import ComposedAuthLink
from rath.links.compose import compose
from rath.links.graphql_ws import GraphQLWSLink
from rath.links.split import SplitLink
from rekuest_next.api.schema import ActionDemandInput, afind
from rekuest_next.errors import ErrorCallError
from rekuest_next.postmans.graphql import GraphQLPostman
from rekuest_next.rath import RekuestNextRath
from rekuest_next.remote import acall, aiterate

# Bounds on a loaded machine; the test itself waits longer.
WAIT = 60


def report(step: str, **fields) -> None:
    print(json.dumps({"step": step, **fields}), flush=True)


async def main(graphql: str, subscriptions: str, token: str) -> None:
    async def load_token() -> str:
        return token

    rath = RekuestNextRath(
        link=compose(
            ComposedAuthLink(token_loader=load_token, token_refresher=load_token),
            SplitLink(
                left=AIOHttpLink(endpoint_url=graphql),
                right=GraphQLWSLink(ws_endpoint_url=subscriptions),
                split=lambda operation: operation.node.operation
                != OperationType.SUBSCRIPTION,
            ),
        )
    )
    postman = GraphQLPostman(rath=rath)
    async with rath, postman:

        async def find(key: str):
            return await afind(matching=ActionDemandInput(key=key), rath=rath)

        add = await find("add")
        value = await asyncio.wait_for(acall(add, a=20, b=22, postman=postman), WAIT)
        report("add", value=value)

        count = await find("count")

        async def collect() -> list:
            return [item async for item in aiterate(count, n=3, postman=postman)]

        report("count", value=await asyncio.wait_for(collect(), WAIT))

        divide = await find("divide")
        try:
            await asyncio.wait_for(acall(divide, a=1.0, b=0.0, postman=postman), WAIT)
            report("divide", value="no error")
        except ErrorCallError as error:
            report("divide", error=str(error))

        ticks = await find("ticks")
        first = asyncio.Event()
        seen = []

        async def tick() -> None:
            async for value in aiterate(ticks, n=1000, seconds=0.2, postman=postman):
                seen.append(value)
                first.set()

        running = asyncio.create_task(tick())
        await asyncio.wait_for(first.wait(), WAIT)
        # Cancelling the consumer makes the postman send the cancel mutation and wait for
        # the CANCELLED event (bounded by its cancel_timeout).
        running.cancel()
        try:
            await running
        except asyncio.CancelledError:
            pass
        report("cancel", ticks=len(seen))


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--graphql", required=True, help="http(s)://HOST/graphql")
    parser.add_argument("--subscriptions", required=True, help="ws(s)://HOST/graphql")
    parser.add_argument("--token", required=True)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.graphql, arguments.subscriptions, arguments.token))
