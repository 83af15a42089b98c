"""Operations over a repository: backup, restore, check."""
