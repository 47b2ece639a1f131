"""Tests of the Python guest SDK on a normal Python (no component needed).

Run from the repository root: python3 -m unittest discover -s guest-sdk/python/tests
"""

import dataclasses
import importlib.util
import json
import sys
import unittest
from enum import Enum
from pathlib import Path
from typing import Iterator, Optional

ROOT = Path(__file__).resolve().parents[3]
sys.path.insert(0, str(ROOT / "guest-sdk" / "python"))

from rekuest_guest import (  # noqa: E402
    ActionError,
    Context,
    DefinitionError,
    Host,
    model,
    register,
    structure,
)
from rekuest_guest import _docs, _runtime  # noqa: E402


class RecordingHost(Host):
    """Records what the action did; cancels after `cancel_after` yields."""

    def __init__(self, cancel_after: int | None = None) -> None:
        super().__init__()
        self.events: list[str] = []
        self.cancel_after = cancel_after

    def log(self, level, message):
        self.events.append(f"log {level.value} {message}")

    def progress(self, percent, message):
        self.events.append(f"progress {percent} {message}")

    def yield_returns(self, returns_json):
        self.yields.append(returns_json)

    def is_cancelled(self):
        return self.cancel_after is not None and len(self.yields) >= self.cancel_after


class Isolated(unittest.TestCase):
    """Each test registers into an empty registry and runs against a recording host."""

    def setUp(self) -> None:
        self.saved = dict(_runtime._actions)
        _runtime._actions.clear()
        self.host = RecordingHost()
        self.previous_host = _runtime.set_host(self.host)

    def tearDown(self) -> None:
        _runtime._actions.clear()
        _runtime._actions.update(self.saved)
        _runtime.set_host(self.previous_host)

    def definition(self, key: str) -> dict:
        return next(d for d in json.loads(_runtime.describe()) if d["key"] == key)

    def run_action(self, key: str, args: object) -> tuple[tuple[str, str] | None, list]:
        self.host.yields.clear()
        text = args if isinstance(args, str) else json.dumps(args)
        error = _runtime.run(key, text)
        return error, [json.loads(returns) for returns in self.host.yields]


def load_example(name: str) -> list[dict]:
    spec = importlib.util.spec_from_file_location(
        f"example_{name}", ROOT / "examples" / "python" / name / "actions.py"
    )
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return json.loads(_runtime.describe())


class ExamplesMatchTheRustExamples(Isolated):
    def test_definitions_equal_the_rust_examples(self) -> None:
        for name in ["math", "generator", "text", "structures"]:
            _runtime._actions.clear()
            with self.subTest(name):
                expected = json.loads((ROOT / "tests" / "expected" / f"{name}.json").read_text())
                self.assertEqual(load_example(name), expected)

    def test_hostile_has_the_shape_of_the_rust_hostile(self) -> None:
        expected = json.loads((ROOT / "tests" / "expected" / "hostile.json").read_text())
        actual = load_example("hostile")
        self.assertEqual([d["key"] for d in actual], [d["key"] for d in expected])
        for ours, theirs in zip(actual, expected):
            ours.pop("description")
            theirs.pop("description")
            self.assertEqual(ours, theirs)


class Docstrings(unittest.TestCase):
    def test_google_numpy_and_rest_agree(self) -> None:
        google = """Divide with remainder.

        Rounds toward zero.

        Args:
            a (int): the dividend,
                any integer
            b: the divisor

        Returns:
            int: the quotient
            int: the remainder

        Raises:
            ValueError: never
        """
        numpy = """Divide with remainder.

        Rounds toward zero.

        Parameters
        ----------
        a : int
            the dividend,
            any integer
        b : int
            the divisor

        Returns
        -------
        int
            the quotient
        remainder : int
            the remainder
        """
        rest = """Divide with remainder.

        Rounds toward zero.

        :param a: the dividend,
            any integer
        :param int b: the divisor
        :returns: the quotient
        :returns: the remainder
        """
        for text in (google, numpy, rest):
            docs = _docs.parse(text)
            self.assertEqual(docs.description, "Divide with remainder.\n\nRounds toward zero.")
            self.assertEqual(docs.params, {"a": "the dividend, any integer", "b": "the divisor"})
            self.assertEqual(docs.returns, ["the quotient", "the remainder"])

    def test_summary_is_one_line_and_the_body_keeps_its_lines(self) -> None:
        docs = _docs.parse("Count the words\nof a text.\n\nFirst line.\nSecond line.\n\n\nLast.")
        self.assertEqual(
            docs.description, "Count the words of a text.\n\nFirst line.\nSecond line.\n\nLast."
        )

    def test_a_returns_paragraph_is_one_description(self) -> None:
        docs = _docs.parse("Crop.\n\nReturns:\n    The cropped copy, a new\n    image in mikro.\n")
        self.assertEqual(docs.returns, ["The cropped copy, a new image in mikro."])

    def test_no_docstring_has_no_description(self) -> None:
        self.assertIsNone(_docs.parse(None).description)
        self.assertIsNone(_docs.parse("Args:\n    a: x").description)

    def test_title_case(self) -> None:
        self.assertEqual(_docs.title_case("add_numbers"), "Add Numbers")
        self.assertEqual(_docs.title_case("enumerate_words"), "Enumerate Words")


class Definitions(Isolated):
    def test_ports_by_type(self) -> None:
        class Color(Enum):
            """A color."""

            RED = 1
            GREEN = 2

        @model
        class Point:
            """A point.

            Attributes:
                x: across
            """

            x: float
            y: Optional[float] = None

        @register
        def shapes(
            counts: dict[str, list[int]],
            color: Color,
            points: list[Point],
            label: Optional[str],
            scale: float = 1.5,
            flag: bool = False,
            note: Optional[str] = None,
            ctx: Context = None,  # type: ignore[assignment]
        ) -> tuple[int, Optional[str]]:
            return 0, None

        definition = self.definition("shapes")
        self.assertEqual(definition["name"], "Shapes")
        self.assertEqual(definition["description"], "No Description")
        args = {port["key"]: port for port in definition["args"]}
        self.assertEqual(list(args), ["counts", "color", "points", "label", "scale", "flag", "note"])
        self.assertEqual(
            args["counts"],
            {"key": "counts", "kind": "DICT", "nullable": False, "children": [
                {"key": "...", "kind": "LIST", "nullable": False, "children": [
                    {"key": "...", "kind": "INT", "nullable": False}]}]},
        )
        self.assertEqual(
            args["color"],
            {"key": "color", "kind": "ENUM", "nullable": False, "description": "A color.",
             "identifier": "Color", "choices": [
                 {"value": "RED", "label": "RED"}, {"value": "GREEN", "label": "GREEN"}]},
        )
        self.assertEqual(
            args["points"]["children"][0],
            {"key": "...", "kind": "MODEL", "nullable": False, "description": "A point.",
             "identifier": "Point", "children": [
                 {"key": "x", "kind": "FLOAT", "nullable": False, "description": "across"},
                 {"key": "y", "kind": "FLOAT", "nullable": True, "default": None}]},
        )
        self.assertEqual(args["label"], {"key": "label", "kind": "STRING", "nullable": True})
        self.assertEqual(
            args["scale"], {"key": "scale", "kind": "FLOAT", "nullable": True, "default": 1.5}
        )
        self.assertEqual(args["flag"]["default"], False)
        self.assertEqual(args["note"], {"key": "note", "kind": "STRING", "nullable": True})
        self.assertEqual(
            definition["returns"],
            [{"key": "return0", "kind": "INT", "nullable": False},
             {"key": "return1", "kind": "STRING", "nullable": True}],
        )

    def test_generators_and_options(self) -> None:
        @register(name="Count up", version="2")
        def count(n: int) -> Iterator[int]:
            """Count.

            Yields:
                int: the next number
            """
            yield from range(n)

        @register
        def nothing() -> None:
            pass

        definition = self.definition("count")
        self.assertEqual(definition["kind"], "GENERATOR")
        self.assertEqual(definition["name"], "Count up")
        self.assertEqual(definition["version"], "2")
        self.assertEqual(definition["returns"][0]["description"], "the next number")
        self.assertEqual(self.definition("nothing")["returns"], [])
        self.assertEqual(self.definition("nothing")["kind"], "FUNCTION")

    def test_unsupported_signatures_fail_at_registration(self) -> None:
        def untyped(a):
            return a

        def union(a: int | str) -> None:
            pass

        def bare_list(a: list) -> None:
            pass

        def int_keys(a: dict[int, int]) -> None:
            pass

        async def coroutine(a: int) -> None:
            pass

        def not_json(a: float = float("nan")) -> None:
            pass

        def wrong_default(a: int = "three") -> None:  # type: ignore[assignment]
            pass

        def stars(*a: int) -> None:
            pass

        def object_port(a: object) -> None:
            pass

        cases = {
            untyped: "needs a type hint",
            union: "only Optional[T]",
            bare_list: "list[int]",
            int_keys: "DICT keys must be str",
            coroutine: "async functions are not supported",
            not_json: "cannot be sent as JSON",
            wrong_default: "the default of argument 'a': expected INT, got string \"three\"",
            stars: "*args",
            object_port: "cannot be a port",
        }
        for function, message in cases.items():
            with self.subTest(function.__name__):
                with self.assertRaises(DefinitionError) as raised:
                    register(function)
                self.assertIn(message, str(raised.exception))

        @register
        def twice() -> None:
            pass

        with self.assertRaisesRegex(DefinitionError, "already registered"):
            register(twice)


class Running(Isolated):
    def setUp(self) -> None:
        super().setUp()

        @register
        def add(a: int, b: int = 3) -> int:
            if a < 0:
                raise ZeroDivisionError("negative")
            if a > 100:
                raise ActionError("too large")
            return a + b

        @register
        def nested(values: list[list[int]], flags: Optional[dict[str, bool]] = None) -> int:
            return len(values)

        @register
        def wrong(kind: str) -> int:
            return {"str": "x", "float": 1.5, "none": None}[kind]  # type: ignore[return-value]

        @register
        def pair() -> tuple[int, str]:
            return 1, "one"

        @register
        def mean(values: list[float]) -> float:
            return sum(values) / len(values)

    def test_runs_and_yields_once(self) -> None:
        self.assertEqual(self.run_action("add", {"a": 1, "b": 2, "unknown": True}), (None, [{"return0": 3}]))
        self.assertEqual(self.host.yields, ['{"return0":3}'])
        self.assertEqual(self.run_action("pair", {}), (None, [{"return0": 1, "return1": "one"}]))

    def test_missing_or_null_args_take_the_default(self) -> None:
        self.assertEqual(self.run_action("add", {"a": 1})[1], [{"return0": 4}])
        self.assertEqual(self.run_action("add", {"a": 1, "b": None})[1], [{"return0": 4}])
        self.assertEqual(self.run_action("mean", {"values": [1, 2]})[1], [{"return0": 1.5}])

    def test_bad_args_fail_naming_the_port(self) -> None:
        cases = [
            ("add", {"b": 1}, "argument 'a': missing; expected INT"),
            ("add", {"a": "x"}, 'argument \'a\': expected INT, got string "x"'),
            ("add", {"a": 1.5}, "argument 'a': expected INT, got number 1.5"),
            ("add", {"a": True}, "argument 'a': expected INT, got boolean true"),
            ("nested", {"values": [[1], [2, "x"]]}, 'argument \'values[1][1]\': expected INT, got string "x"'),
            ("nested", {"values": {"x": 1}}, "argument 'values': expected LIST of LIST of INT, got an object"),
            ("nested", {"values": [], "flags": {"red": 1}}, "argument 'flags[\"red\"]': expected BOOL, got number 1"),
            ("nested", {"values": [None]}, "argument 'values[0]': expected LIST of INT, got null"),
            ("add", "[1]", "args must be a JSON object, got a list of 1 items"),
            ("subtract", {}, "unknown action 'subtract'; this component has: add, nested, wrong, pair, mean"),
        ]
        for key, args, message in cases:
            with self.subTest(message):
                self.assertEqual(self.run_action(key, args), (("failed", message), []))
        error, _ = self.run_action("add", '{"a": 1')
        self.assertEqual(error[0], "failed")
        self.assertTrue(error[1].startswith("args are not valid JSON: "), error)
        long = self.run_action("add", {"a": "y" * 100})[0][1]
        self.assertTrue(long.endswith("yyy…"), long)

    def test_action_errors_fail_and_other_exceptions_are_critical(self) -> None:
        self.assertEqual(self.run_action("add", {"a": 101}), (("failed", "too large"), []))
        self.assertEqual(
            self.run_action("add", {"a": -1}), (("critical", "ZeroDivisionError: negative"), [])
        )
        traceback = self.host.events[-1]
        self.assertTrue(traceback.startswith("log CRITICAL Traceback"), traceback)
        self.assertIn('raise ZeroDivisionError("negative")', traceback)
        self.assertEqual(
            self.run_action("mean", {"values": []})[0],
            ("critical", "ZeroDivisionError: division by zero"),
        )

    def test_returns_that_do_not_fit_fail(self) -> None:
        self.assertEqual(
            self.run_action("wrong", {"kind": "str"})[0],
            ("failed", 'return \'return0\': expected INT, got string "x"'),
        )
        self.assertEqual(
            self.run_action("wrong", {"kind": "float"})[0],
            ("failed", "return 'return0': expected INT, got number 1.5"),
        )
        self.assertEqual(
            self.run_action("wrong", {"kind": "none"})[0],
            ("failed", "return 'return0': expected INT, got None"),
        )


class Generators(Isolated):
    def test_generators_yield_each_item_and_stop_when_cancelled(self) -> None:
        closed = []

        @register
        def count(n: int, ctx: Context) -> Iterator[int]:
            try:
                for i in range(1, n + 1):
                    ctx.progress(i * 100 / n, f"{i} of {n}")
                    yield i
            finally:
                closed.append(True)

        self.assertEqual(
            self.run_action("count", {"n": 3}),
            (None, [{"return0": 1}, {"return0": 2}, {"return0": 3}]),
        )
        self.assertIn("progress 33 1 of 3", self.host.events)
        self.host.cancel_after = 2
        closed.clear()
        self.assertEqual(self.run_action("count", {"n": 5}), (None, [{"return0": 1}, {"return0": 2}]))
        self.assertEqual(closed, [True], "a cancelled generator is closed")

    def test_an_error_after_some_items_fails_the_task(self) -> None:
        @register
        def items() -> Iterator[int]:
            yield 1
            raise ActionError("out of items")

        self.assertEqual(self.run_action("items", {}), (("failed", "out of items"), [{"return0": 1}]))


class Structures(Isolated):
    def setUp(self) -> None:
        super().setUp()

        @structure(identifier="@mikro/image")
        class Image:
            def __init__(self, id: int) -> None:
                self.id = id

            def shrink(self) -> str:
                return f"image:{self.id}"

            @classmethod
            def expand(cls, reference: str) -> "Image":
                if not reference.startswith("image:"):
                    raise ValueError("expected image:<id>")
                return cls(int(reference[6:]))

        @register
        def bigger(image: Image) -> Image:
            return Image(image.id + 1)

    def test_structures_expand_and_shrink(self) -> None:
        self.assertEqual(self.run_action("bigger", {"image": "image:7"}), (None, [{"return0": "image:8"}]))
        self.assertEqual(
            self.run_action("bigger", {"image": "video:7"})[0],
            (
                "failed",
                'argument \'image\': cannot expand STRUCTURE @mikro/image from "video:7": '
                "expected image:<id>",
            ),
        )
        self.assertEqual(
            self.run_action("bigger", {"image": True})[0],
            ("failed", "argument 'image': expected STRUCTURE @mikro/image, got boolean true"),
        )

    def test_structure_needs_shrink_and_expand(self) -> None:
        with self.assertRaisesRegex(DefinitionError, "needs a shrink"):

            @structure(identifier="@x/y")
            class Broken:
                pass


class EnumsAndModels(Isolated):
    def test_enums_and_models_cross_the_wire(self) -> None:
        class Case(Enum):
            Upper = 1
            Lower = 2

        @dataclasses.dataclass
        class Stats:
            words: int
            note: Optional[str]

        @register
        def shout(case: Case, stats: Stats) -> tuple[Case, Stats]:
            return case, Stats(stats.words * 2, None)

        error, yields = self.run_action("shout", {"case": "Lower", "stats": {"words": 2}})
        self.assertIsNone(error)
        self.assertEqual(yields, [{"return0": "Lower", "return1": {"words": 4, "note": None}}])
        self.assertEqual(
            self.run_action("shout", {"case": "Sideways", "stats": {"words": 2}})[0],
            ("failed", 'argument \'case\': expected ENUM (Upper, Lower), got string "Sideways"'),
        )
        self.assertEqual(
            self.run_action("shout", {"case": "Upper", "stats": {"note": "x"}})[0],
            ("failed", "argument 'stats.words': missing; expected INT"),
        )
        self.assertEqual(
            self.definition("shout")["returns"][1]["identifier"], "Stats", "a dataclass is a model"
        )
        self.assertNotIn("description", self.definition("shout")["returns"][1])


class HostApi(Isolated):
    def test_log_and_progress_reach_the_host(self) -> None:
        from rekuest_guest import is_cancelled, log, progress

        log("plain")
        log("careful", "warning")
        Context().info("hello")
        progress(150, "almost")
        progress(-3)
        progress(49.6, "f")
        progress(float("nan"))
        self.assertFalse(is_cancelled())
        self.assertEqual(
            self.host.events,
            [
                "log DEBUG plain",
                "log WARN careful",
                "log INFO hello",
                "progress 100 almost",
                "progress 0 None",
                "progress 50 f",
                "progress 0 None",
            ],
        )
        with self.assertRaisesRegex(ValueError, "unknown log level"):
            log("x", "loud")



class HttpOutsideTheHost(unittest.TestCase):
    def test_requests_fail_clearly_without_wasi_http(self):
        from rekuest_guest import http

        with self.assertRaisesRegex(http.HTTPError, "wasi:http host of rekuest-host"):
            http.get("http://a.example/")
        with self.assertRaisesRegex(http.HTTPError, "not an absolute http"):
            http.post("ftp://a.example/", json={"a": 1})

    def test_response_helpers(self):
        from rekuest_guest import http

        response = http.Response("http://a.example/x", 404, [("Content-Type", b"text/plain")], b"gone")
        self.assertEqual(response.headers["content-type"], "text/plain")
        self.assertFalse(response.ok)
        with self.assertRaisesRegex(http.HTTPError, "answered 404: gone") as raised:
            response.raise_for_status()
        self.assertEqual(raised.exception.status, 404)
        self.assertEqual(http.Response("u", 200, [], b'{"a": 1}').json(), {"a": 1})

    def test_task_token_comes_from_the_host(self):
        host = _runtime.Host()
        host.token = "provenance"
        previous = _runtime.set_host(host)
        try:
            self.assertEqual(_runtime.task_token(), "provenance")
            self.assertEqual(_runtime.Context().task_token(), "provenance")
        finally:
            _runtime.set_host(previous)


if __name__ == "__main__":
    unittest.main()


class FakeChild(_runtime.Child):
    """A child that yields a fixed list, then completes or raises."""

    def __init__(self, items: list) -> None:
        self.items = list(items)
        self.closed = False

    def next(self):
        if not self.items:
            return None
        item = self.items.pop(0)
        if isinstance(item, Exception):
            raise item
        return json.dumps(item)

    def close(self):
        self.closed = True


class CallingHost(RecordingHost):
    """Answers calls with a FakeChild of `items`, recording the target and args."""

    def __init__(self, items: list) -> None:
        super().__init__()
        self.items = items
        self.calls: list = []
        self.children: list[FakeChild] = []

    def call(self, target, args_json):
        self.calls.append((target, json.loads(args_json)))
        child = FakeChild(self.items)
        self.children.append(child)
        return child


class Calls(Isolated):
    def with_host(self, items: list) -> CallingHost:
        host = CallingHost(items)
        _runtime.set_host(host)
        self.host = host
        return host

    def test_dependencies_are_declared_in_the_definition(self) -> None:
        @register(dependencies=["add", {"key": "adder", "hash": "abc", "optional": True}])
        def twice(a: int) -> int:
            return a

        self.assertEqual(
            self.definition("twice")["dependencies"],
            [
                {"key": "add", "action": "add", "optional": False},
                {"key": "adder", "hash": "abc", "optional": True},
            ],
        )
        with self.assertRaises(DefinitionError):

            @register(dependencies=[{"key": "x"}])
            def broken(a: int) -> int:
                return a

    def test_a_call_gives_the_childs_returns(self) -> None:
        host = self.with_host([{"return0": 3}])
        self.assertEqual(_runtime.call("add", a=1, b=2), 3)
        self.assertEqual(host.calls, [(("dependency", "add"), {"a": 1, "b": 2})])
        self.assertTrue(host.children[0].closed)

    def test_a_childs_failure_raises_a_call_error_the_action_can_catch(self) -> None:
        self.with_host([_runtime.CallError("failed", "cannot divide by zero")])

        @register(dependencies=["divide"])
        def safe(a: float, b: float) -> str:
            try:
                return str(_runtime.call("divide", a=a, b=b))
            except _runtime.CallError as error:
                return f"{error.kind}: {error.message}"

        error, yields = self.run_action("safe", {"a": 1.0, "b": 0.0})
        self.assertIsNone(error)
        self.assertEqual(yields, [{"return0": "failed: cannot divide by zero"}])

    def test_a_generator_is_iterated(self) -> None:
        self.with_host([{"return0": 1}, {"return0": 2}, {"return0": 3}])
        self.assertEqual(list(Context().iterate(_runtime.dependency("count"), n=3)), [1, 2, 3])

    def test_outside_a_component_calls_are_refused(self) -> None:
        _runtime.set_host(Host())
        with self.assertRaises(_runtime.CallError) as caught:
            _runtime.call("add", a=1)
        self.assertEqual(caught.exception.kind, "refused")


class Keeping(Isolated):
    """Shelves and agent states through the host API (the default host keeps them itself)."""

    def test_a_shelved_return_is_a_reference_and_comes_back_as_the_value(self) -> None:
        load_example("shelf")
        returns = self.definition("make_numbers")["returns"][0]
        self.assertEqual(
            (returns["kind"], returns["identifier"]), ("MEMORY_STRUCTURE", "@rekuest-host/shelved")
        )
        error, yields = self.run_action("make_numbers", {"n": 10})
        self.assertIsNone(error)
        drawer = yields[0]["return0"]
        self.assertEqual(json.loads(self.host.unshelve(drawer)), list(range(10)))
        self.assertEqual(self.run_action("sum_numbers", {"numbers": drawer}), (None, [{"return0": 45}]))

    def test_an_unknown_drawer_fails_the_task_naming_it(self) -> None:
        load_example("shelf")
        error, _ = self.run_action("sum_numbers", {"numbers": "drawer-404"})
        self.assertEqual(error, ("failed", "argument 'numbers': no drawer 'drawer-404' here"))

    def test_a_state_is_declared_read_and_replaced(self) -> None:
        definitions = load_example("counter")
        (increment,) = definitions
        self.assertEqual(increment["locks"], ["counter"])
        self.assertEqual(
            [(state["key"], [port["key"] for port in state["ports"]]) for state in increment["states"]],
            [("counter", ["count"])],
        )
        self.host.set_state("counter", '{"count": 4}')
        self.assertEqual(self.run_action("increment", {"by": 2}), (None, [{"return0": 6}]))
        self.assertEqual(json.loads(self.host.get_state("counter")), {"count": 6})

    def test_a_class_that_is_no_state_cannot_be_declared(self) -> None:
        @model
        class Plain:
            x: int

        with self.assertRaises(DefinitionError):

            @register(states=[Plain])
            def uses(ctx: Context) -> None:
                pass


class StandardLogging(Isolated):
    """The `logging` module as a component installs it (rekuest_guest._logging.install)."""

    def setUp(self) -> None:
        super().setUp()
        import logging

        from rekuest_guest import _logging

        root = logging.getLogger()
        self.saved_logging = (list(root.handlers), root.level)
        root.handlers.clear()
        _logging.install()

    def tearDown(self) -> None:
        import logging

        root = logging.getLogger()
        root.handlers[:] = self.saved_logging[0]
        root.setLevel(self.saved_logging[1])
        super().tearDown()

    def test_levels_map_to_rekuest_levels_without_a_prefix(self) -> None:
        import logging

        @register
        def chatty() -> None:
            logger = logging.getLogger("chatty.worker")
            logger.debug("hidden at the default level")
            logger.info("starting")
            logger.warning("slow disk")
            logger.error("lost %d frames", 3)
            logger.critical("giving up")

        self.assertIsNone(_runtime.run("chatty", "{}"))
        self.assertEqual(
            self.host.events,
            [
                "log INFO starting",
                "log WARN slow disk",
                "log ERROR lost 3 frames",
                "log CRITICAL giving up",
            ],
        )

    def test_debug_arrives_once_the_action_lowers_the_level(self) -> None:
        import logging

        logging.getLogger().setLevel(logging.DEBUG)
        logging.getLogger("x").debug("details")
        self.assertEqual(self.host.events, ["log DEBUG details"])

    def test_exception_carries_its_traceback(self) -> None:
        import logging

        try:
            1 / 0
        except ZeroDivisionError:
            logging.getLogger("x").exception("division failed")
        [event] = self.host.events
        self.assertTrue(event.startswith("log ERROR division failed\nTraceback"), event)
        self.assertIn("ZeroDivisionError: division by zero", event)

    def test_install_twice_logs_once(self) -> None:
        import logging

        from rekuest_guest import _logging

        _logging.install()
        logging.getLogger().info("once")
        self.assertEqual(self.host.events, ["log INFO once"])
