"""The zoo: one module per family; importing it registers the specs. No torch imported here."""

from dlopt.models.zoo import dense, generative, sequence, text, vision  # noqa: F401  (registration)
