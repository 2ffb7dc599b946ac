"""Operations tooling above storage: health checks and reports (may do HTTP and render text)."""
