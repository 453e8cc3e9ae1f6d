"""gate.classes: matching the candidate's classes to the baseline's by name, and every way that can go wrong."""
from __future__ import annotations

import numpy as np
import pytest
import torch

from gate.classes import RoleNames, align_classes, is_generic
from gate.errors import ConfigError
from gate.forward import to_scores


def _named(*names: str, source: str = "id2label") -> RoleNames:
    return RoleNames(tuple(names), source, generic=is_generic(tuple(names)))


def test_the_same_order_needs_no_reordering():
    a = align_classes(_named("a", "b", "c"), _named("a", "b", "c"))
    assert a.by_name and a.columns is None and a.names == ("a", "b", "c")


def test_a_permutation_reorders_the_candidate_columns_to_the_baseline():
    a = align_classes(_named("cat", "dog", "eel"), _named("eel", "cat", "dog"))
    assert a.columns == (1, 2, 0)
    logits = torch.tensor([[0.1, 0.7, 0.2], [3.0, -1.0, 0.5]])     # candidate columns: eel, cat, dog
    scores = to_scores(logits, kind="logits", columns=a.columns)
    predicted = [a.names[i] for i in scores.argmax(1).tolist()]
    assert predicted == ["cat", "eel"]                                # the candidate's own reading, by name
    np.testing.assert_array_equal(scores.numpy(), logits[:, [1, 2, 0]].numpy())


def test_class_map_renames_candidate_classes():
    a = align_classes(_named("negative", "positive"), _named("pos", "neg"),
                      class_map={"pos": "positive", "neg": "negative"})
    assert a.columns == (1, 0) and a.renamed == (("pos", "positive"), ("neg", "negative"))
    assert "renamed by class_map: pos -> positive, neg -> negative" in a.describe()


@pytest.mark.parametrize(("baseline", "candidate", "class_map", "message"), [
    (("a", "b"), ("a", "c"), None, "only the baseline has [b], only the candidate has [c]"),
    (("a", "b", "c"), ("a", "b"), None, "only the baseline has [c], only the candidate has none"),
    (("a", "b"), ("x", "b"), {"y": "a"}, "class_map.y: 'y' is not one of the candidate's classes ([x, b])"),
    (("a", "b"), ("x", "b"), {"x": "z"}, "class_map.x: 'z' is not one of the baseline's classes ([a, b])"),
    (("a", "b"), ("x", "b"), {"x": "b"}, "class_map: two candidate classes map to the same baseline class [b]"),
])
def test_names_that_cannot_be_matched_are_config_errors(baseline, candidate, class_map, message):
    with pytest.raises(ConfigError) as err:
        align_classes(_named(*baseline), _named(*candidate), class_map=class_map)
    assert message in str(err.value)


def test_class_map_needs_names_on_both_sides():
    with pytest.raises(ConfigError, match="the candidate does not name its classes"):
        align_classes(_named("a", "b"), RoleNames(None, None), class_map={"x": "a"})


def test_generic_names_against_real_ones_warn_and_compare_by_position():
    a = align_classes(_named("LABEL_0", "LABEL_1"), _named("neg", "pos"))
    assert a.columns is None and not a.by_name
    assert a.names is None                      # the candidate's names never name the run's classes alone
    assert len(a.warnings) == 1 and "the baseline names its classes generically" in a.warnings[0]
    b = align_classes(_named("neg", "pos"), _named("LABEL_0", "LABEL_1"))
    assert b.columns is None and not b.by_name and b.names == ("neg", "pos")
    assert len(b.warnings) == 1 and "the candidate names its classes generically" in b.warnings[0]


def test_a_candidate_alone_does_not_name_the_runs_classes():
    a = align_classes(RoleNames(None, None), _named("neg", "pos"))
    assert (a.columns, a.warnings, a.names) == (None, (), None)
    assert a.describe().startswith("classes compared by position: only the candidate names its classes; its names "
                                   "do not name the run's classes")
    b = align_classes(_named("neg", "pos"), RoleNames(None, None))
    assert (b.columns, b.names) == (None, ("neg", "pos"))
    assert b.describe() == "classes compared by position: only the baseline names its classes"


def test_top_level_class_names_name_an_unnamed_baseline_and_the_candidate_is_matched_to_them():
    a = align_classes(RoleNames(None, None), _named("pos", "neg"), top_level=("neg", "pos"))
    assert a.by_name and a.names == ("neg", "pos") and a.columns == (1, 0)
    assert a.baseline == RoleNames(None, None)       # the report still shows the baseline's own (no) names
    assert a.describe() == ("the candidate's columns were reordered to class_names' order (the baseline names none "
                            "itself) by name ('neg' column 1 -> 0, 'pos' column 0 -> 1)")
    same = align_classes(RoleNames(None, None), _named("neg", "pos"), top_level=("neg", "pos"))
    assert same.by_name and same.columns is None
    assert same.describe() == "the candidate names its classes as class_names names the baseline's, in the same order"
    generic = align_classes(_named("LABEL_0", "LABEL_1"), _named("pos", "neg"), top_level=("neg", "pos"))
    assert generic.by_name and generic.columns == (1, 0)         # placeholders are not names: class_names wins
    with pytest.raises(ConfigError, match=r"only the baseline has \[pos\], only the candidate has \[positive\]"):
        align_classes(RoleNames(None, None), _named("neg", "positive"), top_level=("neg", "pos"))


def test_top_level_class_names_must_be_the_named_classes():
    a = align_classes(RoleNames(None, None), RoleNames(None, None), top_level=("x", "y"))
    assert a.names == ("x", "y") and a.columns is None
    assert align_classes(_named("y", "x"), RoleNames(None, None), top_level=("x", "y")).names == ("y", "x")
    with pytest.raises(ConfigError, match=r"class_names: \[x, z\] are not the classes the baseline names"):
        align_classes(_named("x", "y"), RoleNames(None, None), top_level=("x", "z"))


def test_generic_means_label_i_in_index_order():
    assert is_generic(("LABEL_0", "LABEL_1"))
    assert not is_generic(("LABEL_1", "LABEL_0")) and not is_generic(("LABEL_0", "cat")) and not is_generic(())


@pytest.mark.parametrize("bad", ["neg\n::error title=forged::gate passed", "neg\r", "a\x1b[31m", "x\u2028y",
                                 "pos\u202etxt.exe", "\x85next"])
def test_class_names_that_are_not_plain_text_are_refused_wherever_they_come_from(bad):
    from gate.classes import model_names, refuse_unprintable_names, unprintable_name
    from gate.errors import ModelError

    assert unprintable_name(("ok", bad)) == (1, bad)
    with pytest.raises(ConfigError, match=r"gate.yaml: class_names: class 1 .* holds the character .*plain text"):
        align_classes(RoleNames(None, None), RoleNames(None, None), top_level=("ok", bad),
                      where=lambda key: f"gate.yaml: {key}")
    with pytest.raises(ConfigError, match=r"targets: class 0"):
        refuse_unprintable_names((bad,), where="targets")

    class Loaded:                       # what a loader hands over: the checkpoint's id2label in index order
        path, format, class_names = "cand/", "huggingface", ("ok", bad)

    with pytest.raises(ModelError, match=r"^cand/: id2label: class 1 "):
        model_names(Loaded())


def test_names_with_other_unicode_are_plain_text():
    from gate.classes import unprintable_name

    assert unprintable_name(("café", "猫", "👩\u200d💻", "a b", "x-y_z", "LABEL_0")) is None
