"""Plumbing for the saliency-map course.

The notebooks import everything they need from here, so that their words go
to importance scores rather than to file handling:

* :mod:`helpers.data` – the 25 ImageNet validation images, read safely;
* :mod:`helpers.model` – the network (SqueezeNet 1.1 by default; pretrained, from a file, or explicitly untrained);
* :mod:`helpers.images` – the lab's preprocessing, its inverse, and noise;
* :mod:`helpers.plots` – figures of images, maps and histograms;
* :mod:`helpers.checks` – comparisons with diagnostic messages, for the tests.

None of it answers a graded exercise.
"""

from .data import ImageNetVal, class_name, imagenet_class_names, load_imagenet_val
from .images import (IMAGENET_MEAN, IMAGENET_STD, add_noise, blur_image, deprocess,
                     preprocess, preprocess_batch, rescale)
from .model import (choose_device, load_model, load_squeezenet, network_metadata, weights_description,
                    weights_fingerprint)

__version__ = "0.1.0"
