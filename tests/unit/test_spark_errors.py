"""A Spark month error names the Java cause in its one line."""

from shopfloor.spark.errors import error_line


class Py4JLike(Exception):
    pass


def test_the_java_root_cause_is_on_the_line():
    exc = Py4JLike(
        "An error occurred while calling o56.jdbc.\n"
        ": java.sql.SQLException: No suitable driver\n"
        "\tat java.sql/java.sql.DriverManager.getDriver(DriverManager.java:299)\n"
        "Caused by: java.lang.ClassNotFoundException: org.postgresql.Driver\n"
        "\tat java.base/jdk.internal.loader.BuiltinClassLoader.loadClass(Unknown Source)\n")
    assert error_line(exc) == ("An error occurred while calling o56.jdbc. "
                               "java.lang.ClassNotFoundException: org.postgresql.Driver")


def test_a_plain_error_keeps_its_first_line():
    assert error_line(ValueError("bad month\nmore")) == "bad month"
    assert error_line(Py4JLike("An error occurred while calling o1.x.")) == (
        "An error occurred while calling o1.x.")
