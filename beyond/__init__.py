"""The code of the notebooks beyond the lab, for after the homework.

Students receive this package only when the instructor publishes the course
with ``course publish DEST --after homework``: it computes SmoothGrad, so it
answers the homework. It depends on :mod:`helpers` only, never on the
instructor's package.

* :mod:`beyond.gradients` - the gradient of a class score with respect to
  the input, the one function every map below (and the instructor's lab
  loop and fast SmoothGrad) differentiates with;
* :mod:`beyond.smoothgrad` - the homework's SmoothGrad (pixel-space noise,
  max-abs maps), several noisy copies per backward pass;
* :mod:`beyond.attribution` - the wider family of gradient methods (gradient
  x input, SmoothGrad, SmoothGrad squared, VarGrad, Integrated Gradients);
* :mod:`beyond.sanity` - model-randomisation sanity checks and map similarity.
"""
