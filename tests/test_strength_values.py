"""Values as a user meets them: every refusal names the variable, the value and the rule, and
a rule reads back as the bounds it enforces."""

from __future__ import annotations

import pytest

from livetune_rl.values import (
    InvalidNameError,
    InvalidValueError,
    Spec,
    UnknownNameError,
    VarType,
    coerce,
    validate_name,
)


@pytest.mark.parametrize(("vtype", "raw", "rule"), [
    (VarType.FLOAT, "abc", "is not a float"),
    (VarType.FLOAT, [1.5], "is not a float"),
    (VarType.FLOAT, "inf", "is not a finite float"),
    (VarType.FLOAT, True, "is a bool, not a float"),
    (VarType.FLOAT, 10**400, "is too large for a float"),
    (VarType.INT, "2.5", "is not an int"),
    (VarType.INT, 2.5, "is not a whole number"),
    (VarType.INT, True, "is a bool, not an int"),
    (VarType.INT, [1], "is not an int"),
    (VarType.INT, 2**64, "is outside the 64-bit int range"),
    (VarType.BOOL, "maybe", "is not a bool (use true/false, 1/0, yes/no)"),
    (VarType.BOOL, 2, "is not a bool"),
    (VarType.STR, 5, "is not a string"),
])
def test_refusals_name_the_variable_the_value_and_the_rule(vtype: VarType, raw: object,
                                                            rule: str) -> None:
    shown = repr(raw)
    with pytest.raises(InvalidValueError) as info:
        coerce(vtype, raw, "knob.name")
    message = str(info.value)
    assert message.startswith("knob.name: ") and rule in message
    assert shown[:40] in message


def test_an_unnamed_value_is_called_value_in_the_message() -> None:
    with pytest.raises(InvalidValueError, match=r"^value: 'abc' is not a float$"):
        coerce(VarType.FLOAT, "abc")


def test_bool_words_are_read_case_and_space_insensitively() -> None:
    assert [coerce(VarType.BOOL, w) for w in (" YES ", "On", "T", "0", 1, 0)] == [
        True, True, True, False, True, False]


def test_a_long_string_and_lone_surrogate_are_refused_with_the_reason() -> None:
    with pytest.raises(InvalidValueError, match=r"^s: string longer than 4096 characters$"):
        coerce(VarType.STR, "x" * 4097, "s")
    assert coerce(VarType.STR, "x" * 4096, "s") == "x" * 4096
    with pytest.raises(InvalidValueError, match=r"^s: '\\ud800' is not valid Unicode text$"):
        coerce(VarType.STR, "\ud800", "s")


def test_spec_accept_names_the_variable_in_every_refusal() -> None:
    spec = Spec.for_default(0.5, min=0.0, max=1.0, check=lambda v: "odd" if v == 0.25 else None)
    for raw, rule in (("x", "is not a float"), (2.0, "is above the maximum 1.0"),
                      (-1.0, "is below the minimum 0.0"), (0.25, "0.25 refused: odd")):
        with pytest.raises(InvalidValueError) as info:
            spec.accept("lr", raw)
        assert str(info.value).startswith("lr: ") and rule in str(info.value)
    assert spec.accept("lr", "1") == 1.0 and spec.accept("lr", 0) == 0.0
    assert Spec.for_default("a", choices=["a", "b"]).accept("opt", "b") == "b"


@pytest.mark.parametrize(("spec", "text"), [
    (Spec.for_default(0.5), ""),
    (Spec.for_default(0.5, min=0.0), "[0.0, inf]"),
    (Spec.for_default(0.5, max=1.0), "[-inf, 1.0]"),
    (Spec.for_default(3, min=1, max=5), "[1, 5]"),
    (Spec.for_default("adam", choices=["adam", "sgd"]), "{adam, sgd}"),
    (Spec.for_default(True), ""),
])
def test_describe_reads_back_the_rule(spec: Spec, text: str) -> None:
    assert spec.describe() == text


def test_spec_definition_errors_name_the_variable() -> None:
    with pytest.raises(InvalidValueError, match=r"^lr: min 2.0 is greater than max 1.0$"):
        Spec.for_default(0.5, min=2.0, max=1.0, name="lr")
    with pytest.raises(InvalidValueError, match=r"^flag: bounds only apply to float and int"):
        Spec.for_default(True, min=0, name="flag")
    with pytest.raises(InvalidValueError, match=r"^lr: 5.0 is above the maximum 1.0$"):
        Spec.for_default(5.0, max=1.0, name="lr")
    spec = Spec.for_default(2, min=1.0, max=3.0, choices=[1.0, 2.0])
    assert (spec.min, spec.max, spec.choices) == (1, 3, (1, 2))
    assert all(type(x) is int for x in (spec.min, spec.max, *spec.choices))


def test_invalid_names_are_refused_with_the_rule() -> None:
    with pytest.raises(InvalidNameError, match=r"dotted identifiers such as 'reward.hungry' "
                                               r"\(letters, digits and _, not starting with a "
                                               r"digit, parts joined by '\.'\)"):
        validate_name("2fast")
    with pytest.raises(InvalidNameError, match=r"^a name must be a non-empty string, not ''$"):
        validate_name("")
    with pytest.raises(InvalidNameError, match=r"is longer than 128 characters$"):
        validate_name("a" * 129)
    assert validate_name("a" * 128) == "a" * 128


def test_unknown_name_error_carries_the_name_and_reads_plainly() -> None:
    error = UnknownNameError("learning_rat", ["learning_rate", "gamma"])
    assert error.name == "learning_rat" and error.suggestions == ["learning_rate"]
    assert str(error) == "no variable named 'learning_rat'; did you mean learning_rate?"
    assert str(UnknownNameError("zzz", ["gamma"], "trigger")) == "no trigger named 'zzz'"
    assert isinstance(error, KeyError)


def test_each_part_of_a_definition_is_named_in_its_refusal() -> None:
    with pytest.raises(InvalidValueError, match=r"^default: min 2.0 is greater than max 1.0$"):
        Spec.for_default(0.5, min=2.0, max=1.0)  # no name given
    with pytest.raises(InvalidValueError, match=r"^lr min: 'abc' is not a float$"):
        Spec.for_default(0.5, min="abc", name="lr")
    with pytest.raises(InvalidValueError, match=r"^n choice: 'b' is not an int$"):
        Spec.for_default(1, choices=[1, "b"], name="n")
    pinned = Spec.for_default(1.0, min=1.0, max=1.0, name="pinned")  # one allowed value
    assert (pinned.min, pinned.max) == (1.0, 1.0) and pinned.accept("pinned", "1") == 1.0


def test_refusals_of_text_quote_the_text() -> None:
    with pytest.raises(InvalidValueError, match=r"^lr: '٥' is not a float \(write it with "
                                                r"ASCII digits, e.g\. 1e-4\)$"):
        coerce(VarType.FLOAT, "٥", "lr")
    with pytest.raises(InvalidNameError, match=r"^name 'aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa'"
                                               r"\.\.\. is longer than 128 characters$"):
        validate_name("a" * 129)
