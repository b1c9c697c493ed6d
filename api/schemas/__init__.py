"""Request and response models, in families ``XBase / XCreate / XUpdate / XPublic``."""
