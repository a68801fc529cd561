"""Who is calling: identities and the authorization checks the services apply."""
