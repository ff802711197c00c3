"""<think> parsing on recorded streams (hand-written chunk lists, tags split every possible way)."""

from __future__ import annotations

import itertools

import pytest

from desktop_app.engines.think import ThinkParser, split_thinking, strip_thinking


def run(chunks, **kw):
    p = ThinkParser(**kw)
    segs = []
    for c in chunks:
        segs += p.feed(c)
    segs += p.finish()
    return p, segs


def joined(segs, kind):
    return "".join(t for k, t in segs if k == kind)


def test_plain_answer_passes_through():
    p, segs = run(["Hello", ", wor", "ld!"])
    assert p.answer == "Hello, world!"
    assert p.thinking == ""
    assert p.thinking_s is None
    assert joined(segs, "answer") == "Hello, world!"
    assert all(k == "answer" for k, _ in segs)


def test_qwen3_style_both_tags():
    chunks = ["<think>", "\nThe user wants", " a greeting.\n", "</think>", "\n\n", "Hi", " there!"]
    p, segs = run(chunks)
    assert p.thinking == "The user wants a greeting.\n"
    assert p.answer == "Hi there!"
    assert joined(segs, "thinking") == p.thinking
    assert joined(segs, "answer") == p.answer
    # thinking segments all come before answer segments
    kinds = [k for k, _ in segs]
    assert kinds == sorted(kinds, key=lambda k: k != "thinking")


def test_tags_split_across_chunks_every_way():
    text = "<think>Let me see: 2+2=4.</think>\n\nThe answer is 4."
    # every split into three pieces at every pair of positions
    for i, j in itertools.combinations(range(1, len(text)), 2):
        p, segs = run([text[:i], text[i:j], text[j:]])
        assert p.thinking == "Let me see: 2+2=4.", (i, j)
        assert p.answer == "The answer is 4.", (i, j)
        assert joined(segs, "answer") == p.answer
        assert joined(segs, "thinking") == p.thinking
        assert not [k for k, _ in segs if k == "reclassify"]


def test_one_character_chunks():
    text = "  <think>\nhmm\n</think>\nOK"
    p, segs = run(list(text))
    assert (p.thinking, p.answer) == ("hmm\n", "OK")
    # no partial tag text ever leaked into the shown answer or thought
    assert "<" not in joined(segs, "answer") and "<" not in joined(segs, "thinking")


def test_template_opened_block_only_close_tag():
    # DeepSeek-R1 distills: the template ends the prompt with "<think>\n".
    chunks = ["Okay, the user", " asks about X.", "</th", "ink>", "\n\nX is", " a letter."]
    p, segs = run(chunks, start_in_thinking=True)
    assert p.thinking == "Okay, the user asks about X."
    assert p.answer == "X is a letter."
    assert joined(segs, "thinking") == p.thinking
    assert not [k for k, _ in segs if k == "reclassify"]


def test_orphan_close_tag_reclassifies_answer_so_far():
    chunks = ["Thinking about", " it.", "</think>", "Answer."]
    p, segs = run(chunks)
    assert p.thinking == "Thinking about it."
    assert p.answer == "Answer."
    recl = [t for k, t in segs if k == "reclassify"]
    assert recl == ["Thinking about it."]
    # what was shown as answer before the tag is exactly what got moved
    shown_before = "".join(t for k, t in segs[: [k for k, _ in segs].index("reclassify")] if k == "answer")
    assert shown_before == "Thinking about it."


def test_think_tag_later_in_answer_is_text():
    chunks = ["Use the ", "<think>", " tag like this."]
    p, _ = run(chunks)
    assert p.answer == "Use the <think> tag like this."
    assert p.thinking == ""


def test_unclosed_think_at_end_is_all_thinking():
    p, segs = run(["<think>I was cut off by max_tok", "ens"])
    assert p.thinking == "I was cut off by max_tokens"
    assert p.answer == ""
    assert p.thinking_s is not None


def test_partial_tag_at_end_is_flushed_as_text():
    p, _ = run(["The sign <"])
    assert p.answer == "The sign <"
    p, _ = run(["<thi"])
    assert p.answer == "<thi"


def test_thinking_duration_uses_the_clock():
    t = iter([10.0, 10.0, 13.5, 99.0])
    p = ThinkParser(clock=lambda: next(t))
    p.feed("<think>a")
    p.feed("b</think>answer")
    assert p.thinking_s == pytest.approx(3.5)


def test_split_and_strip_helpers():
    assert split_thinking("<think>x</think>y") == ("x", "y")
    assert split_thinking("x</think>y", start_in_thinking=True) == ("x", "y")
    assert strip_thinking("<think>secret plan</think>\n\nHello") == "Hello"
    assert strip_thinking("secret</think>Hello") == "Hello"
    assert strip_thinking("<think>a</think>B<think>c</think>D") == "BD"
    assert strip_thinking("no tags here  ") == "no tags here  "
