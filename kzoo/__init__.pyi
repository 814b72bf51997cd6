"""kzoo: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo import data as data
from kzoo import evaluate as evaluate
from kzoo import inference as inference
from kzoo import layers as layers
from kzoo import models as models
from kzoo import predict as predict
from kzoo import preprocessing as preprocessing
from kzoo import recipes as recipes
from kzoo import registry as registry
from kzoo import tasks as tasks
from kzoo import train as train
from kzoo import tune as tune
from kzoo import utils as utils
from kzoo import visualize as visualize
from kzoo import weights as weights
from kzoo.inference import decode_predictions as decode_predictions, load as load, preprocess_input as preprocess_input
from kzoo.models.alexnet import alexnet as alexnet
from kzoo.models.features import feature_extractor as feature_extractor
from kzoo.models.overfeat import overfeat_accurate as overfeat_accurate, overfeat_fast as overfeat_fast
from kzoo.models.resnet import plain110 as plain110, plain18 as plain18, plain20 as plain20, plain32 as plain32, plain34 as plain34, plain44 as plain44, plain56 as plain56, resnet101 as resnet101, resnet110 as resnet110, resnet1202 as resnet1202, resnet152 as resnet152, resnet18 as resnet18, resnet20 as resnet20, resnet32 as resnet32, resnet34 as resnet34, resnet44 as resnet44, resnet50 as resnet50, resnet56 as resnet56
from kzoo.models.zfnet import zfnet as zfnet
from kzoo.registry import create_model as create_model, list_models as list_models

__version__: str
