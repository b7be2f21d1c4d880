"""The ``meisa-sync demo`` application: a small SQLAlchemy app whose users sync to Meisa.

Read it as an example of the library's use: ``models.py`` is the application (users with
subscriptions), ``mapping.py`` says what a user looks like in Meisa, ``story.py`` plays the seed's
story against a reference server and prints what Meisa ends up holding.
"""
