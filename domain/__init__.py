"""giftrec domain package."""
