"""A mint URL found in a token is checked before anything talks to it (no mint needed)."""

from __future__ import annotations

from pathlib import Path

import pytest

from coco_actors import Coco
from coco_actors.errors import InvalidInputError
from coco_actors.tokens import Token, encode_v4
from coco_actors.wire import Proof

PROOF = Proof(1, "00" + "ab" * 7, "s" * 64, "02" + "33" * 32)


@pytest.mark.parametrize("url", ["http://[::1", "http://exa mple", "http://h:99999999",
                                 "http://u:p@h", "http://h/#f", "ftp://h"])
def test_a_token_with_a_bad_mint_url_is_invalid_input(tmp_path: Path, url: str) -> None:
    coco = Coco.open(tmp_path / "w", watcher=False)
    try:
        with pytest.raises(InvalidInputError):
            coco.receive(encode_v4(Token(mint=url, proofs=(PROOF,))))
        assert coco.mints.list() == [] and coco.balance() == {}
    finally:
        coco.close()
