"""The planner: which metric runs in which feature space, and what each side extracts, from declarations."""

import pytest

from fidkit.engine.plan import make_plan
from fidkit.errors import BadInputError


def _tasks(plan):
    return [(t.metric.name, t.space) for t in plan.tasks]


def test_default_metrics_run_in_the_inception_space():
    plan = make_plan()
    assert _tasks(plan) == [("fd", "inception/pool3"), ("kd", "inception/pool3"), ("is", "inception/logits_unbiased"),
                            ("sfid", "inception/spatial"), ("pr", "inception/pool3"), ("dc", "inception/pool3")]
    assert plan.fake.stream == {"inception": {"pool3", "spatial"}}
    assert plan.fake.keep == {"inception": {"pool3", "logits_unbiased"}}
    assert plan.real.keep == {"inception": {"pool3"}}  # IS reads generated images only
    assert plan.preprocessing == {"inception": "tf"}


def test_generic_metrics_run_in_every_requested_space():
    plan = make_plan("fid,kid", "inception,dinov2")
    assert _tasks(plan) == [("fd", "inception/pool3"), ("fd", "dinov2-vitl14/cls"),
                            ("kd", "inception/pool3"), ("kd", "dinov2-vitl14/cls")]
    assert plan.extractors == ["dinov2-vitl14", "inception"]
    assert plan.fake.stream == {"inception": {"pool3"}, "dinov2-vitl14": {"cls"}}


def test_default_metrics_that_a_space_cannot_serve_are_left_out():
    plan = make_plan(None, "dinov2")
    assert {m for m, _ in _tasks(plan)} == {"fd", "kd", "pr", "dc"}
    assert plan.extractors == ["dinov2-vitl14"]


def test_explicit_inception_only_metric_in_another_space_is_refused():
    with pytest.raises(BadInputError, match="is is computed in the inception feature space only"):
        make_plan("fd,is_dinov2", None)


def test_space_named_metrics_pick_their_space():
    assert _tasks(make_plan("fd_dinov2")) == [("fd", "dinov2-vitl14/cls")]
    assert _tasks(make_plan("fid,fd_dinov2")) == [("fd", "inception/pool3"), ("fd", "dinov2-vitl14/cls")]
    assert _tasks(make_plan("prdc_dinov2_vitb14")) == [("pr", "dinov2-vitb14/cls"), ("dc", "dinov2-vitb14/cls")]


def test_bootstrap_keeps_the_generated_embeddings():
    assert make_plan("fid").fake.keep == {"inception": set()}
    with_ci = make_plan("fid", bootstrap=True)
    assert with_ci.fake.keep == {"inception": {"pool3"}} and with_ci.fake.stream == {"inception": {"pool3"}}


def test_unknown_names_are_refused_with_the_choices():
    with pytest.raises(BadInputError, match="unknown feature extractor 'resnet'.*dinov2"):
        make_plan("fid", "resnet")
    with pytest.raises(BadInputError, match="unknown metric 'fdd'.*fid"):
        make_plan("fdd")


@pytest.mark.parametrize("mode, expected", [
    ("clean", {"inception": "clean", "dinov2-vitl14": "dgm-eval"}),
    ("dinov2=edm2", {"inception": "tf", "dinov2-vitl14": "edm2"}),
    ("inception=pytorch,dinov2=edm2", {"inception": "pytorch", "dinov2-vitl14": "edm2"}),
    ({"dinov2": "edm2"}, {"inception": "tf", "dinov2-vitl14": "edm2"}),
])
def test_preprocessing_is_chosen_per_extractor(mode, expected):
    assert make_plan("fd", "inception,dinov2", mode).preprocessing == expected


def test_unknown_preprocessing_is_refused_with_the_choices():
    with pytest.raises(BadInputError, match="unknown preprocessing 'bicubic'.*inception=clean"):
        make_plan("fd", "inception,dinov2", "bicubic")
    with pytest.raises(BadInputError, match="unknown preprocessing 'tf' for dinov2-vitl14"):
        make_plan("fd", "dinov2", "dinov2=tf")
