"""The words of the shapes world: captions, questions and answers for its clips.

Why several templates per meaning: VL-JEPA's premise is that the predictor should learn the
*meaning* of a caption, not its wording, so every event has several phrasings that say the same
thing ("the red ball bounces off the left wall" / "a red ball hits the wall on the left and turns
back"). The last template of every list is held out: the test split alone uses it, so test
accuracy measures generalisation to unseen wordings. Answers have one canonical form each, which
makes normalised exact match meaningful, and they form the candidate set of retrieval.
"""

from __future__ import annotations

import re

COLOURS: dict[str, tuple[float, float, float]] = {
    "red": (0.95, 0.15, 0.1), "green": (0.15, 0.8, 0.2), "blue": (0.2, 0.35, 1.0),
    "yellow": (0.95, 0.85, 0.1), "white": (0.95, 0.95, 0.95),
}
SHAPES: tuple[str, ...] = ("ball", "square", "triangle")
#: drawn only in the unseen-object split (knowing what it does not know)
UNSEEN_SHAPE = "cross"
SIZES: dict[str, float] = {"small": 2.5, "big": 4.0}
SIDES: tuple[str, ...] = ("left", "right", "top", "bottom")
EVENTS: tuple[str, ...] = ("bounce", "collide", "enter", "leave")
#: (colour, shape) of the main object never seen in training; half of the test clips use them
HELD_OUT_COMBOS: frozenset[tuple[str, str]] = frozenset({("red", "triangle"), ("green", "ball"), ("blue", "square")})
NUMBERS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
#: which way an object moves toward / away from each side
TOWARD = {"left": "left", "right": "right", "top": "up", "bottom": "down"}

CAPTIONS: dict[str, tuple[str, ...]] = {
    "bounce": ("the {o} bounces off the {side} wall", "a {o} hits the wall on the {side} and turns back",
               "the {o} rebounds from the {side} edge", "on the {side} the {o} reflects off the wall"),
    "collide": ("the {o} and the {o2} collide", "a {o} crashes into a {o2}",
                "the {o} bumps into the {o2}", "the {o} runs into the {o2}"),
    "enter": ("a {o} enters from the {side}", "the {o} comes into view on the {side}",
              "from the {side} a {o} moves in", "a {o} appears at the {side} edge"),
    "leave": ("the {o} leaves through the {side}", "a {o} exits on the {side} side",
              "the {o} moves out of view at the {side}", "the {o} disappears past the {side} edge"),
}
QUESTIONS: dict[str, tuple[str, ...]] = {
    "count": ("how many objects are there?", "how many shapes can you see?",
              "what is the number of objects?", "count the objects."),
    "colour": ("what colour is the {shape}?", "which colour does the {shape} have?",
               "tell me the colour of the {shape}.", "the {shape} is what colour?"),
    "shape": ("what shape is the {colour} object?", "which shape is {colour}?",
              "name the shape of the {colour} object.", "the {colour} thing is which shape?"),
    "direction": ("which way does the {o} move?", "in which direction is the {o} going?",
                  "where does the {o} travel?", "where is the {o} heading?"),
    "next": ("what happens next?", "what will happen?", "what happens after this?", "what comes next?"),
}
KINDS: tuple[str, ...] = tuple(QUESTIONS)
DIGIT_CAPTIONS = ("a handwritten digit {d}", "the number {d} written by hand", "a picture of the digit {d}",
                  "an image showing a {d}")
DIGIT_QUESTIONS = ("what digit is this?", "which number is written here?", "what number do you see?",
                   "which digit is shown?")


def templates(table: dict[str, tuple[str, ...]] | tuple[str, ...], split: str) -> dict | tuple:
    """The templates a split may use: training all but the last of each list, test the last."""
    pick = (lambda ts: ts[:-1]) if split == "train" else (lambda ts: ts[-1:])
    if isinstance(table, dict):
        return {k: pick(v) for k, v in table.items()}
    return pick(table)


def next_answer(event: str, side: str) -> str:
    """The canonical answer to "what happens next?" for an event at ``side``."""
    return {"bounce": f"it bounces off the {side} wall", "collide": "they collide",
            "leave": f"it leaves through the {side}", "enter": f"it enters from the {side}"}[event]


def answer_candidates(with_digits: bool = True) -> list[str]:
    """Every canonical answer: the candidate set of retrieval and of the unseen-object score."""
    out = [NUMBERS[n] for n in (1, 2, 3)] + list(COLOURS) + list(SHAPES) + sorted(set(TOWARD.values()))
    out += [next_answer(e, s) for e in ("bounce", "leave", "enter") for s in SIDES] + [next_answer("collide", "")]
    if with_digits:
        out += [n for n in NUMBERS if n not in out]
    return out


def normalise(text: str) -> str:
    """Lower case, punctuation dropped, single spaces: the form exact match compares."""
    return " ".join(re.sub(r"[^a-z0-9 ]", " ", text.lower()).split())


def vocabulary() -> list[str]:
    """Every word any caption, question or answer of the world can use (sorted)."""
    words: set[str] = set()
    fills = list(COLOURS) + list(SHAPES) + [UNSEEN_SHAPE] + list(SIDES) + list(NUMBERS) + list(TOWARD.values())
    texts = [t for ts in CAPTIONS.values() for t in ts] + [t for ts in QUESTIONS.values() for t in ts]
    texts += list(DIGIT_CAPTIONS) + list(DIGIT_QUESTIONS) + answer_candidates()
    for t in texts + fills:
        words.update(normalise(re.sub(r"\{\w+\}", " ", t)).split())
    return sorted(words)


__all__ = ["COLOURS", "SHAPES", "SIZES", "SIDES", "EVENTS", "HELD_OUT_COMBOS", "CAPTIONS", "QUESTIONS", "KINDS",
           "DIGIT_CAPTIONS", "DIGIT_QUESTIONS", "NUMBERS", "TOWARD", "UNSEEN_SHAPE", "templates", "next_answer",
           "answer_candidates", "normalise", "vocabulary"]
