"""nn.Module implementations of the zoo. Each builder takes its spec's config dataclass."""
