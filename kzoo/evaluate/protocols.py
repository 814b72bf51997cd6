"""The papers' test protocols by name, the views each takes and ResNet's test scales: plain
constants, which `python -m kzoo.evaluate --help` reads without Keras. Each view's input
size for a model is `kzoo.evaluate.views.view_sizes`.
"""

PROTOCOLS = ("center", "10crop", "dense", "dense-single", "multiscale")

# How each protocol's views are made and counted (one entry of view_sizes per view).
VIEWS = {
    "center": "1 view: the centre crop (model input size) of the resized image",
    "10crop": "10 views: 4 corners and centre (model input size) of the resized image, and their flips "
              "(AlexNet §4.1)",
    "dense": "12 views: Table 5's 6 input sizes (OverFeat §3.3), each with its flip; an image becomes an HxW view "
             "by a resize that covers HxW keeping its aspect, then a centre HxW crop",
    "dense-single": "2 views: Table 5's scale 1 and its flip (OverFeat Table 2's single-scale line, "
                    "'1 fast model, scale 1, fine stride'), made as for dense",
    "multiscale": "5 views: the whole image resized to each shorter side (ResNet §3.4); sizes listed for a square "
                  "image: the longer side follows each image's aspect",
}

FLIPPED = ("dense", "dense-single")  # each input size comes twice: the view and its flip
RESNET_SCALES = (224, 256, 384, 480, 640)  # He et al. §3.4: shorter sides for the multi-scale test
