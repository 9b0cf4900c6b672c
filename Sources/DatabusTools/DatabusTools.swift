public enum DatabusTools {}
