import pytest

from duo_ods.errors import DuoError, HsmError, NodeError, TransportError, ZoneFileError
from duo_ods.transport.base import decode_reply, encode_reply


def test_result_round_trip() -> None:
    assert decode_reply("a", "status", encode_reply({"x": [1, 2]})) == {"x": [1, 2]}


@pytest.mark.parametrize("error", [NodeError("n down"), ZoneFileError("f:1: bad"), HsmError("CKR_X")])
def test_error_round_trip_keeps_kind_and_message(error: DuoError) -> None:
    with pytest.raises(type(error), match=str(error)):
        decode_reply("a", "op", encode_reply(error=error))


def test_garbage_reply() -> None:
    with pytest.raises(TransportError, match="node a: op: reply is not JSON"):
        decode_reply("a", "op", "Traceback ...")
    with pytest.raises(TransportError, match="malformed"):
        decode_reply("a", "op", "[1]")


def test_unknown_kind_becomes_transport_error() -> None:
    with pytest.raises(TransportError, match="weird"):
        decode_reply("a", "op", '{"ok": false, "kind": "Boom", "error": "weird"}')
