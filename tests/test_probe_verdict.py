"""The online probe's verdict (eossl.train.probe_history.probe_verdict): the recorded pool's last score at the
largest k against its own step 0, RCF, band statistics and the random init of that pool, on hand-written histories;
and the pipeline report's pretraining section says the same sentence."""

from __future__ import annotations

import json

import pytest

from eossl.pipeline.report import _pretrain as report_section
from eossl.train.probe_history import new_history, probe_verdict, run_verdict


def _s(mean: float) -> dict:
    return {"mean": mean, "ci95": 0.02}


def _history(step0: float, final: float, rcf=0.763, stats=0.70, rand=0.72) -> dict:
    """Pool stats0 at k = 10 scores ``step0`` at step 0 and ``final`` at step 512 (pool last stays below it);
    baselines at k = 10 (None: not recorded) and a k = 5 that the verdict must not read."""
    h = new_history({"ks": [5, 10]})
    base = {"RCF": rcf, "band statistics": stats, "random init (stats0)": rand, "random init (last)": 0.99}
    h["baselines"] = {"k10": {n: _s(m) for n, m in base.items() if m is not None}, "k5": {"RCF": _s(0.1)}}
    h["evaluations"] = [{"step": s, "minutes": s / 60, "k5": {"stats0": _s(0.99)},
                         "k10": {"last": _s(0.5), "stats0": _s(m)}} for s, m in ((0, step0), (256, 0.6), (512, final))]
    return h


def test_beats_all():
    v = probe_verdict(_history(step0=0.734, final=0.80))
    assert (v.pool, v.k, v.step, v.score, v.missing) == ("stats0", 10, 512, 0.80, ())
    assert [c.against for c in v.comparisons] == ["its initialisation", "RCF", "band statistics", "random init"]
    assert v.beat_all and all(c.beat for c in v.comparisons)
    assert [c.other for c in v.comparisons] == [0.734, 0.763, 0.70, 0.72]      # random init of *its* pool, k = 10
    assert v.comparisons[0].points == pytest.approx(6.6)
    assert v.sentence() == ("online probe verdict: pretraining beat its initialisation (80.0% vs 73.4% at step 0), "
                            "RCF (76.3%), band statistics (70.0%) and random init (72.0%) [pool stats0 80.0% at "
                            "k=10, step 512]")


def test_loses_to_its_initialisation():
    v = probe_verdict(_history(step0=0.734, final=0.712))
    assert not v.beat_all and [c.beat for c in v.comparisons] == [False, False, True, False]
    assert v.comparisons[0].points == pytest.approx(-2.2)
    assert v.sentence().startswith("online probe verdict: pretraining did not beat its initialisation (71.2% vs "
                                   "73.4% at step 0), RCF (76.3%) nor random init (72.0%); it beat band statistics "
                                   "(70.0%)")
    d = v.to_dict()
    assert d["comparisons"][0] == {"against": "its initialisation", "score": 0.712, "other": 0.734,
                                   "points": pytest.approx(-2.2), "beat": False}
    assert d["beat_all"] is False and d["sentence"] == v.sentence()


def test_loses_to_rcf_only():
    v = probe_verdict(_history(step0=0.60, final=0.75))
    assert [c.against for c in v.comparisons if not c.beat] == ["RCF"]
    assert v.sentence().startswith("online probe verdict: pretraining did not beat RCF (76.3%); it beat its "
                                   "initialisation (75.0% vs 60.0% at step 0), band statistics (70.0%) and random "
                                   "init (72.0%)")


def test_a_tie_is_not_a_win():
    assert [c.beat for c in probe_verdict(_history(step0=0.70, final=0.763)).comparisons][1] is False


def test_no_baselines_recorded_says_so():
    h = _history(step0=0.6, final=0.75, rcf=None, stats=None, rand=None)
    v = probe_verdict(h)
    assert v.missing == ("RCF", "band statistics", "random init") and v.beat_all
    assert v.sentence().endswith("; not recorded: RCF, band statistics, random init [pool stats0 75.0% at k=10, "
                                 "step 512]")
    h["baselines"], h["evaluations"] = {}, h["evaluations"][1:]          # nor a step 0: nothing to compare with
    v = probe_verdict(h)
    assert v.comparisons == () and not v.beat_all
    assert "nothing to compare with: an evaluation at step 0, RCF" in v.sentence()
    assert probe_verdict(new_history({"ks": [10]})) is None               # no evaluation at all


def test_only_step_0_is_not_compared_with_itself():
    h = _history(step0=0.6, final=0.75)
    h["evaluations"] = h["evaluations"][:1]
    v = probe_verdict(h)
    assert v.step == 0 and "its initialisation" in v.missing


def test_run_verdict_and_the_report_say_the_same_sentence(tmp_path):
    run = tmp_path / "run"
    assert run_verdict(run) is None
    h = _history(step0=0.734, final=0.712)
    h["settings"].update(n_chips=200, data="builtin", draws=10, every_n_steps=256)
    (run / "probe").mkdir(parents=True)
    (run / "probe" / "history.json").write_text(json.dumps(h))
    said = run_verdict(run).sentence()
    texts = [b[1] for b in report_section("pre", {"run_dir": str(run)}, tmp_path) if b[0] == "p"]
    assert f"Online probe verdict: {said.removeprefix('online probe verdict: ')}." in texts
    assert "pretraining did not beat its initialisation (71.2% vs 73.4% at step 0)" in said
