"""The parts of the settings that stand on their own, one concern each.

appserver/settings.py is the settings module (DJANGO_SETTINGS_MODULE). It imports every setting
defined here by name, where its section is, so that it names every setting there is and the
environment is read in the order of its sections. environment.py is how they all read it.
"""
