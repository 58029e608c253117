"""TrainLens dashboard. Folders by kind, each importing only its own folder or a lower floor (engine always allowed):
charts < server < ui < page parts (train, explain, report, lessons) < views < main.py; tests/test_app_layout.py
checks it."""
