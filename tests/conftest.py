pytest_plugins = ["tests.fixtures.mariadb", "tests.fixtures.rabbitmq"]
