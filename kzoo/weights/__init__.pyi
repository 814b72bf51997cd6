"""kzoo.weights: what it holds, for tools; the names load on first use (tests/test_imports.py checks this file)."""

from kzoo.weights import caffe as caffe
from kzoo.weights import convert as convert
from kzoo.weights import record as record
from kzoo.weights import torch_pickle as torch_pickle

MANIFEST: object
FIELDS: tuple
def manifest():
    ...
def names(model):
    ...
def entry(model, name):
    ...
def fetch(model, name):
    ...
def mean(model, name):
    ...
