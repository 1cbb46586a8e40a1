"""Tasks on a HIRI-ViT backbone: keras-hub's classes (:mod:`~keras_hiri.tasks.hub`,
extra ``[hub]``), detection (:mod:`~keras_hiri.tasks.detection`) and semantic
segmentation (:mod:`~keras_hiri.tasks.segmentation`)."""
