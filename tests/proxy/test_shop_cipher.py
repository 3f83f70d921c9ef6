"""Which `shop_cipher` a TikTok Shop call through the proxy gets."""

from __future__ import annotations

import pytest

from shopkeys.errors import BadApiCall
from shopkeys.providers.tiktok_shop import shop_cipher

ONE = [{"id": "7494", "cipher": "ROW_one"}]
TWO = [{"id": "7494", "cipher": "ROW_one"}, {"id": "7495", "cipher": "ROW_two"}]


def test_the_only_shop_needs_no_naming() -> None:
    assert shop_cipher(ONE, None) == "ROW_one"


def test_of_several_the_named_one_and_none_unnamed() -> None:
    assert shop_cipher(TWO, "7495") == "ROW_two"
    assert shop_cipher(TWO, None) is None
    assert shop_cipher([], None) is None


@pytest.mark.parametrize("shops", [ONE, TWO, [{"id": "7000"}]])
def test_a_shop_the_authorization_lacks_is_refused(shops: list[dict[str, str]]) -> None:
    with pytest.raises(BadApiCall, match="7000"):
        shop_cipher(shops, "7000")
