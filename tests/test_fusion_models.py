"""Model fusion: weighted averages, bad input, weight fit (nnls) and the weight search's honesty."""
import warnings

import numpy as np
import pytest

from sse.fusion import check_models, fit_weights, fuse_models, search_weights
from sse.fusion.errors import FusionError, FusionWarning
from sse.fusion.formats import read_predictions
from sse.fusion.models import simplex_grid

from conftest import SUBMISSION


def _probs(rng, n, k=7, concentration=0.5):
    return rng.dirichlet(np.full(k, concentration), size=n)


def test_fuse_is_weighted_average_divided_by_weight_sum():
    a, b = np.array([[1.0, 0.0]]), np.array([[0.0, 1.0]])
    np.testing.assert_allclose(fuse_models([a, b], [3, 1]), [[0.75, 0.25]])
    np.testing.assert_allclose(fuse_models([a, b]), [[0.5, 0.5]])


def test_models_with_different_row_counts_are_rejected_naming_both():
    rng = np.random.default_rng(0)
    with pytest.raises(FusionError, match="audio has 9 rows but video has 10"):
        fuse_models([_probs(rng, 10), _probs(rng, 9)], names=["video", "audio"])


def test_weights_must_sum_to_a_positive_number():
    rng = np.random.default_rng(0)
    with pytest.raises(FusionError, match="sum to a positive number"):
        fuse_models([_probs(rng, 4), _probs(rng, 4)], [0, 0])


@pytest.mark.parametrize("weights", [[1, -1], [-1, -2], [2, -1]])
def test_a_negative_weight_is_refused(weights):
    rng = np.random.default_rng(0)
    with pytest.raises(FusionError, match="must not be negative"):
        fuse_models([_probs(rng, 4), _probs(rng, 4)], weights)


def test_weight_count_must_match_model_count():
    rng = np.random.default_rng(0)
    with pytest.raises(FusionError, match="3 weights given for 2 models"):
        fuse_models([_probs(rng, 4), _probs(rng, 4)], [1, 1, 1])


def test_nan_in_a_model_is_an_error_naming_model_and_row():
    rng = np.random.default_rng(0)
    bad = _probs(rng, 5)
    bad[3, 2] = np.nan
    with pytest.raises(FusionError, match="m2: NaN or infinite value in row 4"):
        fuse_models([_probs(rng, 5), bad], names=["m1", "m2"])


def test_row_that_is_not_a_distribution_warns_or_fails_when_strict():
    rng = np.random.default_rng(0)
    scores = _probs(rng, 5)
    scores[1] *= 2
    with pytest.warns(FusionWarning, match=r"m2: 1 of 5 rows are not probability distributions \(first: row 2"):
        fuse_models([_probs(rng, 5), scores], names=["m1", "m2"])
    with pytest.raises(FusionError, match="m2: 1 of 5 rows"):
        fuse_models([_probs(rng, 5), scores], names=["m1", "m2"], strict=True)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        fuse_models([_probs(rng, 5), scores], names=["m1", "m2"], scores={1}, strict=True)


def test_fit_recovers_exact_non_negative_weights():
    rng = np.random.default_rng(1)
    models = [_probs(rng, 50) for _ in range(4)]
    truth = np.array([0.2, 0.0, 0.5, 0.3])
    fit = fit_weights(models, np.tensordot(truth, np.stack(models), axes=1))
    np.testing.assert_allclose(fit.weights, truth, atol=1e-9)
    assert fit.max_abs < 1e-12 and "residual" in fit.report()


def test_fit_on_real_emotiw2017_submission_finds_weights_1_1_1_4_7_over_14():
    models = [read_predictions(p) for p in sorted(SUBMISSION.glob("[1-5]_*_predictions.txt"))]
    fit = fit_weights(models, read_predictions(SUBMISSION / "ensemble_model_predictions.txt"))
    np.testing.assert_allclose(fit.weights, np.array([1, 1, 1, 4, 7]) / 14, atol=2e-6)
    assert fit.max_abs < 2e-5  # the files hold 5 significant digits
    assert "1/14" in fit.report() and "2/7" in fit.report()


def test_simplex_grid_has_all_compositions():
    grid = simplex_grid(3, 0.1)
    assert grid.shape == (66, 3)
    np.testing.assert_allclose(grid.sum(axis=1), 1)
    assert len({tuple(np.round(r, 6)) for r in grid}) == 66
    with pytest.raises(FusionError, match="must divide 1"):
        simplex_grid(3, 0.3)


def test_search_prefers_the_informative_model():
    rng = np.random.default_rng(2)
    labels = rng.integers(0, 7, 300)
    informative = _probs(rng, 300)
    informative[np.arange(300), labels] += 0.6
    informative /= informative.sum(axis=1, keepdims=True)
    noise = _probs(rng, 300)
    result = search_weights([noise, informative], labels, step=0.1, names=["noise", "good"])
    assert result.weights[1] > result.weights[0]
    assert result.accuracy == result.accuracies.max() and len(result.accuracies) == 11
    assert result.loo_accuracy <= result.accuracy
    assert "searched 11 weight vectors" in result.report() and "<- chosen" in result.report()


def test_search_over_noise_shows_its_optimism():
    rng = np.random.default_rng(3)
    labels = rng.integers(0, 7, 80)
    models = [_probs(rng, 80) for _ in range(4)]
    result = search_weights(models, labels, step=0.1)
    assert result.accuracy - result.loo_accuracy > 0.05
    assert "optimism" in result.report()


def test_search_ties_go_to_equal_weights():
    rng = np.random.default_rng(4)
    same = _probs(rng, 30)
    result = search_weights([same, same], rng.integers(0, 7, 30), step=0.25)
    np.testing.assert_allclose(result.weights, [0.5, 0.5])


def test_dirichlet_search_includes_equal_weights_and_single_models():
    rng = np.random.default_rng(5)
    models = [_probs(rng, 40) for _ in range(3)]
    result = search_weights(models, rng.integers(0, 7, 40), samples=50, seed=1)
    assert result.candidates.shape == (54, 3)
    np.testing.assert_allclose(result.candidates[0], [1 / 3] * 3)


def test_check_models_rejects_empty_and_non_matrix_input():
    with pytest.raises(FusionError, match="no models"):
        check_models([])
    with pytest.raises(FusionError, match="2-D"):
        check_models([np.ones(7)])
