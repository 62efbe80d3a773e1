"""values: parsing of typed text and Python values, bounds, choices, checks, names."""

from __future__ import annotations

import math

import pytest

from livetune_rl.values import (
    INT_MAX,
    INT_MIN,
    MAX_STRING_LENGTH,
    InvalidNameError,
    InvalidValueError,
    Spec,
    UnknownNameError,
    VarType,
    coerce,
    validate_name,
)


@pytest.mark.parametrize(("raw", "want"), [
    ("5", 5), (" 7 ", 7), ("-3", -3), ("+4", 4), ("1_000", 1000), (5, 5), (5.0, 5), (-0.0, 0),
    (str(INT_MAX), INT_MAX), (str(INT_MIN), INT_MIN),
])
def test_int_accepts(raw: object, want: int) -> None:
    value = coerce(VarType.INT, raw, "n")
    assert value == want and type(value) is int


@pytest.mark.parametrize("raw", [
    "5.5", "5.0", "1e3", "", "five", "0x10", 5.5, math.nan, math.inf, True, False, None, [5],
    str(INT_MAX + 1), str(INT_MIN - 1), INT_MAX + 1, 2**70, 1e300, "9999999999999999999",
])
def test_int_rejects(raw: object) -> None:
    with pytest.raises(InvalidValueError, match=r"^n: "):
        coerce(VarType.INT, raw, "n")


@pytest.mark.parametrize(("raw", "want"), [
    ("1e-4", 1e-4), ("0.5", 0.5), (" -2 ", -2.0), ("3", 3.0), (3, 3.0), (2.5, 2.5),
    ("1E+2", 100.0), ("-0", -0.0),
])
def test_float_accepts(raw: object, want: float) -> None:
    value = coerce(VarType.FLOAT, raw, "lr")
    assert value == want and type(value) is float


@pytest.mark.parametrize("raw", [
    "nan", "NaN", "-nan", "inf", "-inf", "Infinity", "1e400", math.nan, math.inf, -math.inf,
    10**400, "", "abc", "1,5", True, None, b"1", [1.0],
])
def test_float_rejects_non_finite_and_junk(raw: object) -> None:
    with pytest.raises(InvalidValueError, match=r"^lr: "):
        coerce(VarType.FLOAT, raw, "lr")


def test_float_error_says_not_finite() -> None:
    with pytest.raises(InvalidValueError, match="not a finite float"):
        coerce(VarType.FLOAT, "nan", "lr")


@pytest.mark.parametrize("word", ["true", "True", "1", "yes", "on", "Y", " t ", True, 1])
def test_bool_true_words(word: object) -> None:
    assert coerce(VarType.BOOL, word) is True


@pytest.mark.parametrize("word", ["false", "FALSE", "0", "no", "off", "n", "f", False, 0])
def test_bool_false_words(word: object) -> None:
    assert coerce(VarType.BOOL, word) is False


@pytest.mark.parametrize("word", ["maybe", "", "2", 2, -1, 0.0, 1.0, None, "truee"])
def test_bool_rejects(word: object) -> None:
    with pytest.raises(InvalidValueError, match="is not a bool"):
        coerce(VarType.BOOL, word, "flag")


def test_str_rules() -> None:
    assert coerce(VarType.STR, "adam") == "adam"
    assert coerce(VarType.STR, "") == ""
    for bad in (5, 1.0, True, None, b"adam"):
        with pytest.raises(InvalidValueError, match="is not a string"):
            coerce(VarType.STR, bad, "opt")
    assert coerce(VarType.STR, "x" * MAX_STRING_LENGTH) == "x" * MAX_STRING_LENGTH
    with pytest.raises(InvalidValueError, match="longer than"):
        coerce(VarType.STR, "x" * (MAX_STRING_LENGTH + 1), "opt")
    with pytest.raises(InvalidValueError, match="not valid Unicode"):  # lone surrogate
        coerce(VarType.STR, "a\ud800b", "opt")


def test_var_type_of() -> None:
    assert VarType.of(True) is VarType.BOOL  # bool before int
    assert VarType.of(1) is VarType.INT
    assert VarType.of(1.0) is VarType.FLOAT
    assert VarType.of("s") is VarType.STR
    with pytest.raises(InvalidValueError, match="must be float, int, bool or str"):
        VarType.of([1])


def test_spec_bounds_inclusive_and_message_names_variable_value_rule() -> None:
    spec = Spec.for_default(3e-4, min=1e-7, max=1.0, name="learning_rate")
    assert spec.accept("learning_rate", "1") == 1.0
    assert spec.accept("learning_rate", 1e-7) == 1e-7
    with pytest.raises(InvalidValueError) as info:
        spec.accept("learning_rate", "2")
    text = str(info.value)
    assert "learning_rate" in text and "2.0" in text and "maximum 1.0" in text
    with pytest.raises(InvalidValueError, match=r"learning_rate: 0.0 is below the minimum 1e-07"):
        spec.accept("learning_rate", 0)
    assert spec.describe() == "[1e-07, 1.0]"


def test_spec_int_bounds_and_half_open_describe() -> None:
    spec = Spec.for_default(64, min=1)
    assert spec.min == 1 and type(spec.min) is int and spec.max is None
    assert spec.describe() == "[1, inf]"
    with pytest.raises(InvalidValueError, match="below the minimum 1"):
        spec.accept("batch", "0")


def test_spec_choices() -> None:
    spec = Spec.for_default("adam", choices=["adam", "sgd"], name="optimizer")
    assert spec.accept("optimizer", "sgd") == "sgd"
    with pytest.raises(InvalidValueError,
                       match=r"optimizer: 'rmsprop' is not one of 'adam', 'sgd'"):
        spec.accept("optimizer", "rmsprop")
    assert spec.describe() == "{adam, sgd}"
    numeric = Spec.for_default(2, choices=[1, 2, 4.0])
    assert numeric.choices == (1, 2, 4)
    with pytest.raises(InvalidValueError):
        numeric.accept("n", 3)


def test_spec_check_rule() -> None:
    spec = Spec.for_default(2, check=lambda v: None if v % 2 == 0 else "must be even")
    assert spec.accept("n", "4") == 4
    with pytest.raises(InvalidValueError, match=r"n: 3 refused: must be even"):
        spec.accept("n", 3)


@pytest.mark.parametrize(("default", "kwargs", "match"), [
    ("adam", {"min": 0}, "bounds only apply"),
    (True, {"max": 1}, "bounds only apply"),
    (1.0, {"min": 2.0, "max": 1.0}, "greater than max"),
    (5.0, {"max": 1.0}, "above the maximum"),
    ("x", {"choices": ["a", "b"]}, "not one of"),
    (1, {"min": 0.5}, "not a whole number"),
    (1.0, {"max": math.nan}, "not a finite float"),
    (1, {"check": lambda v: "never"}, "refused: never"),
])
def test_spec_for_default_refuses_bad_definitions(default: object, kwargs: dict,
                                                  match: str) -> None:
    with pytest.raises(InvalidValueError, match=match):
        Spec.for_default(default, **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("name", ["lr", "reward.hungry", "_x", "a.b.c_1", "A9", "x" * 128])
def test_valid_names(name: str) -> None:
    assert validate_name(name) == name


@pytest.mark.parametrize("name", [
    "", "1lr", "reward..hungry", ".x", "x.", "a-b", "a b", "a/b", "ä", "x" * 129, None, 5,
    "reward.1x", "a\nb", "lr\n", "reward.hungry\n",
])
def test_invalid_names(name: object) -> None:
    with pytest.raises(InvalidNameError):
        validate_name(name)


def test_unknown_name_suggests_close_names_and_stays_short() -> None:
    err = UnknownNameError("learning_rat", ["learning_rate", "batch_size"])
    assert err.suggestions == ["learning_rate"]
    assert "did you mean learning_rate?" in str(err)
    assert isinstance(err, KeyError)
    long = UnknownNameError("y" * 100_000, ["a"])
    assert len(str(long)) < 200  # must fit a gRPC status (metadata is limited to 8-16 KiB)
