"""The projects in force: those of the configuration file."""


class Registry:
    def __init__(self, settings):
        self._projects = dict(settings.projects)

    def get(self, name):
        return self._projects.get(name)

    def all(self):
        return list(self._projects.values())
