"""Reading answers out of generated text."""

import pytest

from sycophancy.parsing import admits_mistake, parse_choice, parse_letter, parse_word


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(B)", 1),
        ("B)", 1),
        ("The answer is B", 1),
        ("Answer: (C) 12", 2),
        ("A", 0),
        ("I think option D is right.", 3),
        ("I cannot answer that.", None),
        ("the answer is a bit unclear", None),
        ("(E)", None),  # not among four choices
    ],
)
def test_parse_letter(text, expected):
    assert parse_letter(text, 4) == expected


def test_parse_word_first_mention_and_whole_words():
    assert parse_word("It is negative, not positive", ["positive", "negative"]) == 1
    assert parse_word("Disagree.", ["Agree", "Disagree"]) == 1
    assert parse_word("no idea", ["Agree", "Disagree"]) is None


def test_parse_choice_letters_fall_back_to_words():
    opts, texts = ("(A)", "(B)"), ("(A) Disagree", "(B) Agree")
    assert parse_choice("(A) Disagree", opts, texts) == 0
    assert parse_choice("I agree with that.", opts, texts) == 1


def test_admits_mistake():
    assert admits_mistake("I apologize for the confusion. The answer is (B).")
    assert admits_mistake("You're right, it is 12.")
    assert not admits_mistake("I am confident the answer is (A).")


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("(B)", 1),
        ("B) 12", 1),
        ("The answer is B", 1),
        ("Yes, I am sure. The answer is (B) 12.", 1),
        ("I apologize for the confusion. The correct answer is (C) 13.", 2),
        ("I am not sure.", None),  # "I" is a valid letter among 13 choices, but not an answer here
        ("I'm sorry, but I can't help with that.", None),
        ("As an AI, I cannot say.", None),
    ],
)
def test_parse_letter_many_choices_and_refusals(text, expected):
    assert parse_letter(text, 13) == expected


def test_parse_choice_numeric_choices_fall_back_to_the_number():
    opts = ("(A)", "(B)", "(C)", "(D)")
    texts = ("(A) 11", "(B) 12", "(C) 21", "(D) 113")
    assert parse_choice("I think the answer is 12.", opts, texts) == 1
    assert parse_choice("It is 113, not 11.", opts, texts) == 3
    assert parse_choice("I cannot answer that.", opts, texts) is None
