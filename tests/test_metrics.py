"""Classification metrics against scikit-learn's independent implementations."""

import numpy as np
import pytest
from sklearn import metrics as skm

from eossl.evaluate.metrics import classification_metrics, confusion_matrix, mean_ci95


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_metrics_match_sklearn(seed):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, 4, 300)
    p = np.where(rng.random(300) < 0.6, y, rng.integers(0, 4, 300))
    m = classification_metrics(y, p, ["a", "b", "c", "d"])
    assert m["overall_accuracy"] == pytest.approx(skm.accuracy_score(y, p))
    assert m["macro_f1"] == pytest.approx(skm.f1_score(y, p, average="macro"))
    assert m["kappa"] == pytest.approx(skm.cohen_kappa_score(y, p))
    assert m["confusion_matrix"] == skm.confusion_matrix(y, p, labels=range(4)).tolist()
    prec, rec, f1, sup = skm.precision_recall_fscore_support(y, p, labels=range(4), zero_division=0)
    for i, name in enumerate("abcd"):
        c = m["per_class"][name]
        assert (c["precision"], c["recall"], c["f1"], c["support"]) == pytest.approx((prec[i], rec[i], f1[i], sup[i]))


def test_negative_labels_are_ignored():
    y = np.array([0, 1, -1, -1, 1])
    p = np.array([0, 1, 0, 0, 0])           # the two ignored entries would be wrong if counted
    m = classification_metrics(y, p, ["x", "y"])
    assert m["n"] == 3 and m["overall_accuracy"] == pytest.approx(2 / 3)
    assert confusion_matrix(y, p, 2).tolist() == [[1, 0], [1, 1]]


def test_absent_class_is_none_and_left_out_of_macro_f1():
    y = np.array([0, 0, 1, 1])
    m = classification_metrics(y, y, ["x", "y", "never"])
    assert m["per_class"]["never"]["f1"] is None and m["per_class"]["never"]["support"] == 0
    assert m["macro_f1"] == 1.0 and m["kappa"] == 1.0


def test_bad_input():
    with pytest.raises(ValueError, match="entries"):
        classification_metrics([0, 1], [0], ["a", "b"])
    with pytest.raises(ValueError, match="class indices"):
        classification_metrics([0, 2], [0, 1], ["a", "b"])
    with pytest.raises(ValueError, match="no labelled"):
        classification_metrics([-1, -1], [0, 1], ["a", "b"])


def test_mean_ci95():
    s = mean_ci95([0.5, 0.7, 0.6])
    assert s["mean"] == pytest.approx(0.6) and s["ci95"] == pytest.approx(4.302653 * 0.1 / np.sqrt(3), rel=1e-5)
    assert mean_ci95([0.5])["ci95"] is None


def test_iou_from_confusion_matches_set_counts():
    from eossl.evaluate.metrics import iou_from_confusion

    y = np.array([0, 0, 1, 1, 1, 2])
    p = np.array([0, 1, 1, 1, 0, 0])
    iou, miou = iou_from_confusion(confusion_matrix(y, p, 4))
    for c in range(3):   # |pred == c and y == c| / |pred == c or y == c|
        assert iou[c] == pytest.approx(((p == c) & (y == c)).sum() / ((p == c) | (y == c)).sum())
    assert np.isnan(iou[3]) and miou == pytest.approx(np.mean(iou[:3]))
