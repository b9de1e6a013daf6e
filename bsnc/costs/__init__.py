"""Costs of architectures (DESIGN §5): flops and params counted from shapes, steps on K
workers, latency tables measured on a device, and user functions. Every cost maps active
edge masks [B, E] to values [B]. Entry point: `bsnc.costs.registry.parse_cost`."""
