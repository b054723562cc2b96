"""Navigation commands: route families state their manoeuvre, the others mix "" and neutral."""

from __future__ import annotations

import re

import pytest

from alpamayo_ros.data.scenarios import (
    FAMILIES,
    NEUTRAL_COMMANDS,
    ROUTE_COMMANDS,
    make_scenario,
    navigation_corpus,
    route_manoeuvre,
    simulate,
)
from alpamayo_ros.taxonomy import ComponentType

ROUTE_FAMILIES = {"turn": "turn", "route_lane_change": "lane_change",
                  "gap_search": "lane_change", "lane_change_abort": "lane_change",
                  "cut_in_during_lane_change": "lane_change", "exit_split": "exit",
                  "merge": "merge"}
SEEDS = range(4)


def _words(text: str) -> list[str]:
    return re.findall(r"[a-z]+", text)


def test_route_family_list_is_complete():
    with_route = {f for f in FAMILIES if route_manoeuvre(make_scenario(f, 0)) is not None}
    assert with_route == set(ROUTE_FAMILIES)


@pytest.mark.parametrize("family", sorted(ROUTE_FAMILIES))
def test_route_command_matches_the_experts_manoeuvre(family):
    sides = set()
    for seed in SEEDS:
        scenario = make_scenario(family, seed)
        kind, side = route_manoeuvre(scenario)
        assert kind == ROUTE_FAMILIES[family]
        cmd = scenario.navigation
        assert cmd in {t.format(d=side) for t in ROUTE_COMMANDS[kind]}
        other = "right" if side == "left" else "left"
        assert side in _words(cmd) and other not in _words(cmd)
        # The expert's own route causes (turn, lane change, exit, lane end) point the
        # same way in every frame of the episode, from the first one on.
        episode = simulate(scenario)
        assert episode.navigation == cmd
        directions = {c.attrs["direction"] for f in episode.frames for c in f.decision.lat_causes
                      if c.type in (ComponentType.ROUTING_INTENT, ComponentType.LANE)
                      and "direction" in c.attrs}
        assert directions == {side}, (seed, cmd, directions)
        sides.add(side)
    if family in ("turn", "route_lane_change"):  # both directions occur over more seeds
        sides |= {route_manoeuvre(make_scenario(family, s))[1] for s in range(4, 16)}
        assert sides == {"left", "right"}


def test_neutral_families_mix_no_command_and_neutral_words():
    for family in sorted(set(FAMILIES) - set(ROUTE_FAMILIES)):
        cmds = [make_scenario(family, seed).navigation for seed in range(12)]
        assert set(cmds) <= {""} | set(NEUTRAL_COMMANDS), family
        assert "" in cmds and set(cmds) - {""}, (family, cmds)
        for cmd in cmds:
            assert not {"left", "right", "exit", "merge", "turn"} & set(_words(cmd))


def test_commands_are_deterministic_and_varied():
    for family in FAMILIES:
        assert make_scenario(family, 3).navigation == make_scenario(family, 3).navigation
    turns = {make_scenario("turn", s).navigation for s in range(16)}
    assert len(turns) >= 4


def test_commands_fit_the_navigation_budget():
    from alpamayo_ros.model.configuration import preset
    from alpamayo_ros.model.tokenizer import CocTokenizer, seed_corpus

    corpus = navigation_corpus()
    assert len(corpus) == len(set(corpus))
    assert max(len(c.split()) for c in corpus) <= 8  # the tiny preset reads 8 tokens
    cfg = preset("default").tokenizer
    tok = CocTokenizer.train(seed_corpus() + corpus, cfg.bpe_vocab_size, cfg.trajectory_bins)
    assert max(len(tok.encode(c)) for c in corpus) <= cfg.max_navigation_tokens
