"""kzoo.evaluate: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.evaluate import dense as dense
from kzoo.evaluate import fcn as fcn
from kzoo.evaluate import metrics as metrics
from kzoo.evaluate import protocols as protocols
from kzoo.evaluate import run as run
from kzoo.evaluate import views as views
from kzoo.evaluate.dense import DenseEvaluator as DenseEvaluator, TABLE5_MAPS as TABLE5_MAPS, TABLE5_SCALES as TABLE5_SCALES, dense_input_sizes as dense_input_sizes, dense_model as dense_model, dense_scores as dense_scores
from kzoo.evaluate.fcn import fully_convolutional as fully_convolutional, multiscale_probabilities as multiscale_probabilities, with_input_shape as with_input_shape
from kzoo.evaluate.metrics import average_precision as average_precision, mean_average_precision as mean_average_precision
from kzoo.evaluate.protocols import PROTOCOLS as PROTOCOLS, RESNET_SCALES as RESNET_SCALES
from kzoo.evaluate.views import center_crop as center_crop, ensemble_scores as ensemble_scores, evaluate as evaluate, evaluate_ensemble as evaluate_ensemble, predict_views as predict_views, protocol_scores as protocol_scores, ten_crops as ten_crops, view_sizes as view_sizes
