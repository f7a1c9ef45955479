"""giftrec jobs package."""
